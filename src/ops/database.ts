/**
 * The connection the operators' commands use: the same database as the
 * worker, from the same .env. Without DATABASE_URL that is the embedded
 * PostgreSQL of `npm start` (src/embedded_postgres.ts): the running worker's,
 * if it is up, or else started just for the command and stopped after it.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import type { Pool } from "pg";
import type { Config } from "../config";
import { createPool, endPool } from "../db";
import { EMBEDDED_PORT, embeddedDataDir, embeddedDir, embeddedUrl, startEmbeddedPostgres } from "../embedded_postgres";

// The operators' queries each read a bounded set of rows in milliseconds, but
// a plan over 10,000 index lookups passes jit_above_cost, and compiling it
// took longer (70–100 ms) than running it.
const SESSION_SETTINGS = { jit: "off" };

// The URL startEmbeddedPostgres gives; the worker may hold the server, and a
// second server on the same data directory would not start.
const EMBEDDED_URL = embeddedUrl(EMBEDDED_PORT);

export interface OpsDatabase {
  pool: Pool;
  close(): Promise<void>;
}

async function answers(pool: Pool): Promise<boolean> {
  try {
    await pool.query("SELECT 1");
    return true;
  } catch {
    return false;
  }
}

/** Opens the worker's database for one command; throws with advice if there is none yet. */
export async function openOpsDatabase(config: Config): Promise<OpsDatabase> {
  if (config.databaseUrl !== null) {
    const pool = createPool(config.databaseUrl, 2, SESSION_SETTINGS);
    return { pool, close: () => pool.end() };
  }
  const running = createPool(EMBEDDED_URL, 2, SESSION_SETTINGS);
  if (await answers(running)) return { pool: running, close: () => running.end() };
  await running.end();
  const dir = embeddedDir();
  if (!existsSync(path.join(embeddedDataDir(dir), "PG_VERSION"))) {
    throw new Error(`no database yet: DATABASE_URL is unset and ${embeddedDataDir(dir)} is empty; run \`npm start\` or \`npm run migrate\` first`);
  }
  const embedded = await startEmbeddedPostgres(dir, EMBEDDED_PORT);
  const pool = createPool(embedded.connectionString, 2, SESSION_SETTINGS);
  return {
    pool,
    async close() {
      await endPool(pool);
      await embedded.stop();
    },
  };
}
