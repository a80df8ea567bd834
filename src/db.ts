/**
 * Connections: the pg pool shared by graphile-worker and our queries, and
 * what a database error means: the server being away (restart, network) is
 * waited out; anything else is a real error. The embedded PostgreSQL that
 * `npm start` uses when DATABASE_URL is unset is in src/embedded_postgres.ts.
 */
import { Pool, type PoolClient } from "pg";
import { logger, registerSecret, type Log } from "./log";

const log = logger("db");

/**
 * A pg pool that survives a database restart: idle-client errors are logged,
 * not thrown. `settings` are PostgreSQL settings for its sessions, e.g.
 * `{ jit: "off" }`.
 */
export function createPool(connectionString: string, maxConnections = 5, settings: Record<string, string> = {}): Pool {
  try {
    registerSecret(decodeURIComponent(new URL(connectionString).password));
  } catch {
    // Not a URL: nothing to register; pg reports the real problem on connect.
  }
  const options = Object.entries(settings).map(([name, value]) => `-c ${name}=${value}`).join(" ");
  const pool = new Pool({ connectionString, max: maxConnections, ...(options ? { options } : {}) });
  // Without a listener, an idle client dying (e.g. PostgreSQL restarting) would crash the process.
  pool.on("error", (error) => log.warn("idle database connection lost", { error: error.message }));
  // Same for a client that is checked out when its connection dies; graphile-worker checks for this too.
  pool.on("connect", (client) => client.on("error", (error) => log.debug("database connection lost", { error: error.message })));
  return pool;
}

// How long endPool waits for PostgreSQL to see the connections close.
const POOL_CLOSE_WAIT_MS = 2_000;

/**
 * Ends `pool` and waits until each of its connections is closed. pg's
 * `pool.end()` resolves as soon as it has asked them to close; stopping the
 * embedded PostgreSQL right then made it terminate those sessions itself, and
 * each one logged "idle database connection lost" at every clean stop.
 */
export async function endPool(pool: Pool): Promise<void> {
  // pg emits "remove" once a client's connection has closed, after end() has
  // resolved: wait for as many as the pool holds now (idle or checked out).
  const open = pool.totalCount;
  let removed = 0;
  let onRemove = () => {};
  const allClosed = new Promise<void>((resolve) => {
    onRemove = () => {
      if (++removed >= open) resolve();
    };
    if (open === 0) resolve();
  });
  pool.on("remove", onRemove);
  let timer: NodeJS.Timeout | undefined;
  try {
    await pool.end();
    await Promise.race([allClosed, new Promise<void>((resolve) => (timer = setTimeout(resolve, POOL_CLOSE_WAIT_MS)))]);
  } finally {
    clearTimeout(timer);
    pool.off("remove", onRemove);
  }
}

/** Runs `query` on a client of `pool`, released afterwards (destroyed if its connection broke). */
export async function withClient<T>(pool: Pool, query: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    const result = await query(client);
    client.release();
    return result;
  } catch (error) {
    client.release(isDatabaseUnavailable(error) ? (error as Error) : undefined);
    throw error;
  }
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

/** Waits `ms`, or less if `signal` aborts first (not at all if it already has). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
