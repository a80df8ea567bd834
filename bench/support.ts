/** What the bench sections share: the LLM's answer, databases, child workers, gaps, RSS. */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Pool } from "pg";
import { projectRoot } from "../src/paths";
import { FakeLlm, hrNow, type RecordedRequest } from "../test/support/llm_server";
import { median, percentile } from "./table";

export { hrNow };

// A plausible answer of about 300 cl100k tokens (prose is what the LLM returns on most nights).
const ANSWER_SENTENCES =
  "La fotosíntesis es el proceso por el cual las plantas, las algas y algunas bacterias convierten la energía de la luz " +
  "en energía química. Ocurre sobre todo en los cloroplastos, donde la clorofila absorbe la luz roja y azul. El agua se " +
  "divide, se libera oxígeno y se producen ATP y NADPH, que luego alimentan el ciclo de Calvin para fijar el dióxido de " +
  "carbono en azúcares. ";
export const ANSWER_300_TOKENS = ANSWER_SENTENCES.repeat(3).slice(0, 993);

/**
 * An LLM on 127.0.0.1 that answers every generate call at once with
 * ANSWER_300_TOKENS, streamed in the real format (one NDJSON line per token)
 * but written in one piece, as if every token were ready at once.
 */
export async function startInstantLlm(): Promise<FakeLlm> {
  const llm = await FakeLlm.start();
  llm.behaviour = () => ({ text: ANSWER_300_TOKENS, burst: true });
  return llm;
}

/**
 * Inserts `count` prompts with one INSERT and makes sure all their jobs exist before any worker
 * starts: a bulk statement leaves that to the enqueue_prompts task, which the floor worker lacks.
 */
export async function insertPrompts(pool: Pool, count: number): Promise<void> {
  await pool.query(
    `INSERT INTO fila_llm_anahuac (prompt)
     SELECT 'Explica en un párrafo la fotosíntesis, caso ' || g FROM generate_series(1, $1::int) AS g`,
    [count],
  );
  await pool.query(`SELECT fila_llm_enqueue(array_agg(id ORDER BY id)) FROM fila_llm_anahuac WHERE estatus = 'pendiente';
    DELETE FROM fila_llm_housekeeping._private_jobs`);
}

/** The worker's settings for the bench: always open, production defaults otherwise. */
export function workerEnv(databaseUrl: string, llm: FakeLlm, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    LLM_BASE_URL: llm.origin,
    LLM_MODEL: "test-model",
    WINDOW_START: "00:00",
    WINDOW_END: "24:00",
    WINDOW_TZ: "UTC",
    ...overrides,
  };
}

export interface Child {
  process: ChildProcess;
  /** Its stdout and stderr so far. */
  output(): string;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<void>;
}

/**
 * Starts `node <script> ...args` with stdout and stderr going to a file, as under pm2, so the
 * bench process (which also serves the LLM) never spends time reading the child's log.
 */
export function spawnLogged(script: string, args: string[], env: Record<string, string>, logFile: string): Child {
  const fd = openSync(logFile, "w");
  const child = spawn(process.execPath, [script, ...args], {
    cwd: projectRoot,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  return {
    process: child,
    output: () => readFileSync(logFile, "utf8"),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** `node dist/src/cli.js start`, the worker exactly as pm2 runs it. */
export function spawnWorker(env: Record<string, string>, logFile: string): Child {
  return spawnLogged(path.join(projectRoot, "dist", "src", "cli.js"), ["start"], env, logFile);
}

/** Polls `check` every `everyMs` until it is true; throws after `timeoutMs`, naming `what`. */
export async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Completed answers to prompts (not the model's load or unload), in order of arrival. */
export function completedGenerates(llm: FakeLlm): RecordedRequest[] {
  return llm.requests.filter((r) => r.kind === "generate" && r.endedAtHr !== null);
}

export interface DrainStats {
  /** Requests the statistics are over (after the warm-up). */
  measured: number;
  perSecond: number;
  gapMedianMs: number;
  gapP99Ms: number;
  gapMaxMs: number;
  gapMeanMs: number;
}

/**
 * Throughput and the LLM's idle gaps (one answer's end to the next request's start, at the
 * server), skipping the first `warmUp` requests (JIT, connection set-up).
 */
export function drainStats(requests: RecordedRequest[], warmUp: number): DrainStats {
  const steady = requests.slice(warmUp);
  const gaps: number[] = [];
  for (let i = 1; i < steady.length; i++) gaps.push(steady[i].startedAtHr - steady[i - 1].endedAtHr!);
  const spanMs = steady[steady.length - 1].endedAtHr! - steady[0].startedAtHr;
  return {
    measured: steady.length,
    perSecond: (steady.length / spanMs) * 1000,
    gapMedianMs: median(gaps),
    gapP99Ms: percentile(gaps, 99),
    gapMaxMs: Math.max(...gaps),
    gapMeanMs: gaps.reduce((a, b) => a + b, 0) / gaps.length,
  };
}

/** A process's resident set size in MB, from /proc. */
export function rssMb(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!match) throw new Error(`bench: no VmRSS for pid ${pid}`);
  return Number(match[1]) / 1024;
}

/** Formats a number for a table: fixed decimals, thousands separated. */
export function fmt(x: number, decimals = 1): string {
  if (!Number.isFinite(x)) return "n/a";
  return x.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}
