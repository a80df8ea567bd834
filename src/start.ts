/**
 * Running the worker process: open the database (or the embedded one),
 * migrate, start the worker, and stop gracefully on SIGTERM/SIGINT.
 */
import type { Pool } from "pg";
import { describeConfig, redactUrl, type Config } from "./config";
import { createPool, endPool, retryWhileDatabaseAway } from "./db";
import { EMBEDDED_PORT, embeddedDataDir, embeddedDir, startEmbeddedPostgres, type EmbeddedPostgres } from "./embedded_postgres";
import { logger } from "./log";
import { migrate } from "./migrate";
import { describeWindow } from "./window";
import { poolSize, startWorker, type WorkerHandle } from "./worker";

const log = logger("fila-llm");

export interface Database {
  pool: Pool;
  connectionString: string;
  close(): Promise<void>;
}

/**
 * Connects to DATABASE_URL, or starts the embedded PostgreSQL when it is unset.
 * `callerStopsOnSignals`: the caller handles SIGINT/SIGTERM and calls close().
 */
export async function openDatabase(config: Config, options: { callerStopsOnSignals?: boolean } = {}): Promise<Database> {
  let embedded: EmbeddedPostgres | null = null;
  let connectionString = config.databaseUrl;
  if (connectionString === null) {
    const dir = embeddedDir();
    log.info(
      `DATABASE_URL is not set: using an embedded PostgreSQL kept in ${embeddedDataDir(dir)} on 127.0.0.1:${EMBEDDED_PORT}. ` +
        "To use a real server, set DATABASE_URL=postgres://user:password@host:5432/dbname in .env",
    );
    embedded = await startEmbeddedPostgres(dir, EMBEDDED_PORT, options);
    connectionString = embedded.connectionString;
  }
  const pool = createPool(connectionString, poolSize(config));
  return {
    pool,
    connectionString,
    async close() {
      await endPool(pool);
      await embedded?.stop();
    },
  };
}

export async function runMigrations(config: Config): Promise<void> {
  const db = await openDatabase(config);
  try {
    const applied = await migrate(db.pool);
    log.info(applied.length > 0 ? `applied migrations: ${applied.join(", ")}` : "database already up to date");
  } finally {
    await db.close();
  }
}

// Beyond SHUTDOWN_GRACE_SECONDS, a stop may take this long to put the
// interrupted prompt back in the queue and close its connections; past it the
// process exits anyway. ecosystem.config.cjs gives pm2's kill_timeout more.
const STOP_MARGIN_SECONDS = 5;

/**
 * Runs the worker until SIGTERM or SIGINT (pm2 stop, restart, reload; Ctrl-C).
 * The first signal stops taking prompts and gives the one in flight
 * SHUTDOWN_GRACE_SECONDS to finish; past that it is cancelled and stays
 * pendiente, with no attempt counted. Then the process exits 0. A second
 * signal exits at once (1); the prompt in flight then runs again later.
 */
export async function runWorker(config: Config): Promise<void> {
  let worker: WorkerHandle | null = null;
  let db: Database | null = null;
  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) {
      log.warn(`${signal} again: exiting now; the prompt in flight stays pendiente and runs again after the restart`);
      process.exit(1);
    }
    stopping = true;
    if (!worker) {
      log.info(`${signal} before the worker started: exiting`);
      process.exit(0);
    }
    log.info(`${signal}: no new prompt starts; the one in flight has ${config.shutdownGraceSeconds} s to finish`);
    const deadline = setTimeout(() => {
      log.error(`still stopping ${config.shutdownGraceSeconds + STOP_MARGIN_SECONDS} s after ${signal}; exiting now, the prompt in flight runs again after the restart`);
      process.exit(1);
    }, (config.shutdownGraceSeconds + STOP_MARGIN_SECONDS) * 1000);
    deadline.unref();
    worker
      .stop()
      .then(() => db?.close())
      .then(
        () => {
          log.info("stopped");
          process.exit(0);
        },
        (error) => {
          log.error("could not stop cleanly; exiting", { error: (error as Error).message });
          process.exit(1);
        },
      );
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));

  db = await openDatabase(config, { callerStopsOnSignals: true });
  // At boot PostgreSQL may come up after the worker: wait for it rather than
  // crash, which under pm2 would only turn into a restart loop.
  const pool = db.pool;
  await retryWhileDatabaseAway("starting", () => pool.query("SELECT 1"), { log, maxWaitSeconds: Infinity });
  const applied = await migrate(db.pool);
  if (applied.length > 0) log.info(`applied migrations: ${applied.join(", ")}`);
  worker = await startWorker(config, db.pool, db.connectionString);
  const lanes = config.llm.baseUrls.length;
  const perServer = config.llm.concurrencyPerServer === 1 ? "one at a time" : `${config.llm.concurrencyPerServer} at a time`;
  log.info(`worker ready: prompts run ${perServer}${lanes > 1 ? ` on each of ${lanes} servers` : ""}, ${describeWindow(config.window)}`, {
    database: redactUrl(db.connectionString),
    llm: `${config.llm.provider} ${config.llm.baseUrls.map(redactUrl).join(",")} model=${config.llm.model}`,
  });
  log.debug("configuration", describeConfig(config));

  // graphile-worker's pool only ends by itself after an error it cannot
  // recover from (it could not mark a job done, say). A process without a
  // pool would sit idle all night: exit, so that pm2 starts a fresh one; the
  // reaper frees whatever job the old pool held.
  for (const runner of worker.runners) {
    runner.promise.then(
      () => {
        if (stopping) return;
        log.error("a worker pool stopped by itself; exiting so that pm2 restarts the worker");
        process.exit(1);
      },
      (error) => {
        if (stopping) return;
        log.error("a worker pool failed; exiting so that pm2 restarts the worker", { error: String((error as Error)?.message ?? error) });
        process.exit(1);
      },
    );
  }
}
