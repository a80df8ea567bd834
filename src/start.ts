/**
 * Running the worker process: open the database (or the embedded one),
 * migrate, start the worker, and stop gracefully on SIGTERM/SIGINT.
 */
import type { Pool } from "pg";
import { describeConfig, redactUrl, type Config } from "./config";
import { createPool, EMBEDDED_DATA_DIR, EMBEDDED_PORT, startEmbeddedPostgres, type EmbeddedPostgres } from "./db";
import { logger } from "./log";
import { migrate } from "./migrate";
import { describeWindow } from "./window";
import { startWorker } from "./worker";

const log = logger("fila-llm");

export interface Database {
  pool: Pool;
  connectionString: string;
  close(): Promise<void>;
}

/** Connects to DATABASE_URL, or starts the embedded PostgreSQL when it is unset. */
export async function openDatabase(config: Config): Promise<Database> {
  let embedded: EmbeddedPostgres | null = null;
  let connectionString = config.databaseUrl;
  if (connectionString === null) {
    log.info(
      `DATABASE_URL is not set: using an embedded PostgreSQL kept in ${EMBEDDED_DATA_DIR} on 127.0.0.1:${EMBEDDED_PORT}. ` +
        "To use a real server, set DATABASE_URL=postgres://user:password@host:5432/dbname in .env",
    );
    embedded = await startEmbeddedPostgres(EMBEDDED_DATA_DIR, EMBEDDED_PORT, true);
    connectionString = embedded.connectionString;
  }
  const pool = createPool(connectionString);
  return {
    pool,
    connectionString,
    async close() {
      await pool.end();
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

export async function runWorker(config: Config): Promise<void> {
  const db = await openDatabase(config);
  const applied = await migrate(db.pool);
  if (applied.length > 0) log.info(`applied migrations: ${applied.join(", ")}`);
  const worker = await startWorker(config, db.pool, db.connectionString);
  log.info(`worker ready: prompts run one at a time, ${describeWindow(config.window)}`, {
    database: redactUrl(db.connectionString),
    llm: `${config.llm.provider} ${redactUrl(config.llm.baseUrl)} model=${config.llm.model}`,
  });
  log.debug("configuration", describeConfig(config));

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: no new prompt starts; the one in flight has ${config.shutdownGraceSeconds} s to finish`);
    await worker.stop();
    await db.close();
    log.info("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}
