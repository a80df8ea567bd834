#!/usr/bin/env node
/**
 * The command line: `fila-llm [start]` runs the worker (migrating first),
 * `fila-llm migrate` only migrates.
 */
import type { Pool } from "pg";
import { ConfigError, describeConfig, loadConfig, redactUrl, type Config } from "./config";
import { createPool, EMBEDDED_DATA_DIR, EMBEDDED_PORT, startEmbeddedPostgres, type EmbeddedPostgres } from "./db";
import { logger, setLogFormat } from "./log";
import { migrate } from "./migrate";
import { describeWindow } from "./window";
import { startWorker } from "./worker";

const log = logger("fila-llm");

interface Database {
  pool: Pool;
  connectionString: string;
  close(): Promise<void>;
}

/** Connects to DATABASE_URL, or starts the embedded PostgreSQL when it is unset. */
async function openDatabase(config: Config): Promise<Database> {
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

async function runMigrations(config: Config): Promise<void> {
  const db = await openDatabase(config);
  try {
    const applied = await migrate(db.pool);
    log.info(applied.length > 0 ? `applied migrations: ${applied.join(", ")}` : "database already up to date");
  } finally {
    await db.close();
  }
}

async function runWorker(config: Config): Promise<void> {
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

async function main(argv: string[]): Promise<void> {
  const command = argv[0] ?? "start";
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`fila-llm: invalid configuration: ${error.message}`);
      // 78 is EX_CONFIG; ecosystem.config.cjs tells pm2 not to restart-loop on it.
      process.exit(78);
    }
    throw error;
  }
  setLogFormat(config.logFormat);
  switch (command) {
    case "start":
      return runWorker(config);
    case "migrate":
      return runMigrations(config);
    default:
      console.error(`fila-llm: unknown command "${command}". Commands: start, migrate`);
      process.exit(64);
  }
}

process.on("unhandledRejection", (error) => {
  log.error("unexpected error; exiting so that pm2 restarts the worker", { error: String((error as Error)?.stack ?? error) });
  process.exit(1);
});

main(process.argv.slice(2)).catch((error) => {
  log.error("fatal", { error: String(error?.stack ?? error) });
  process.exit(1);
});
