/** Starting real workers for tests: in this process, or as a child process. */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { parseConfig, type Config } from "../../src/config";
import type { Clock } from "../../src/gate";
import { addLogSink } from "../../src/log";
import { projectRoot } from "../../src/paths";
import { startWorker, type WorkerHandle } from "../../src/worker";
import type { TestDatabase } from "./db";

/**
 * A clock for startWorker's `clock` option that runs at real speed from
 * whatever instant a test moves it to, so the window's edges arrive in seconds.
 */
export class MovableClock {
  private offsetMs = 0;
  /** Pass this to startWorker / startInProcessWorker. */
  readonly now: Clock = () => new Date(Date.now() + this.offsetMs);

  /** Moves the clock so that it reads `instant` now. */
  set(instant: string | Date): void {
    this.offsetMs = new Date(instant).getTime() - Date.now();
  }

  /** Back to real time. */
  reset(): void {
    this.offsetMs = 0;
  }

  /** The real Date.now() at which this clock reads `instant`. */
  realMs(instant: string | Date): number {
    return new Date(instant).getTime() - this.offsetMs;
  }
}

/** Settings for a test worker: always open, fast polling, unless overridden. */
export function testEnv(llmBaseUrl: string, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    LLM_BASE_URL: llmBaseUrl,
    LLM_MODEL: "test-model",
    WINDOW_START: "00:00",
    WINDOW_END: "24:00",
    WINDOW_TZ: "UTC",
    WORKER_POLL_INTERVAL_MS: "200",
    ...overrides,
  };
}

export interface InProcessWorker extends WorkerHandle {
  config: Config;
  /** Every log line written while this worker ran. */
  logs: string[];
}

/** A real graphile-worker runner in this process, on the test database. */
export async function startInProcessWorker(
  db: TestDatabase,
  env: Record<string, string>,
  options: { clock?: Clock; crontab?: string } = {},
): Promise<InProcessWorker> {
  const config = parseConfig(env);
  const logs: string[] = [];
  const removeSink = addLogSink((line) => logs.push(line));
  const handle = await startWorker(config, db.pool, db.url, { crontab: "", ...options });
  return {
    ...handle,
    config,
    logs,
    async stop() {
      await handle.stop();
      removeSink();
    },
  };
}

export interface ChildWorker {
  process: ChildProcess;
  output: string[];
  /** Resolves when a line matching `pattern` has been printed. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * `node dist/src/cli.js start` as a child process, the way pm2 runs it, from
 * this project or from a copy of it in `projectDir`. `processGroup`: in a
 * process group of its own, as a command typed in a terminal is, so that a
 * test can send a signal to the whole group as a Ctrl-C does.
 */
export function startChildWorker(env: Record<string, string>, projectDir = projectRoot, options: { processGroup?: boolean } = {}): ChildWorker {
  const child = spawn(process.execPath, [path.join(projectDir, "dist", "src", "cli.js"), "start"], {
    cwd: projectDir,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.processGroup ?? false,
  });
  const output: string[] = [];
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    output.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    listeners.forEach((l) => l());
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    process: child,
    output,
    exited,
    waitFor(pattern, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const line = output.find((l) => pattern.test(l));
          if (line) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve(line);
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; output:\n${output.join("\n")}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Polls `check` until it returns a truthy value, or throws after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | null | undefined | false>,
  timeoutMs = 20_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
