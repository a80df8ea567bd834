/**
 * Applies graphile-worker's schema, then our numbered plain-SQL files in
 * `migrations/`. Safe to repeat and safe to run from two processes at once.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { Pool } from "pg";
import { runMigrations as runGraphileWorkerMigrations } from "graphile-worker";
import { projectRoot } from "./paths";
import { HOUSEKEEPING_SCHEMA } from "./queues";

const MIGRATIONS_DIR = path.join(projectRoot, "migrations");
// Any fixed number works; it only has to be the same in every process.
const MIGRATION_LOCK_KEY = 7_004_201;

export interface MigrationFile {
  id: number;
  name: string;
  file: string;
}

/** The migration files in order, e.g. 0003_control.sql → id 3. */
export async function listMigrations(): Promise<MigrationFile[]> {
  const names = (await readdir(MIGRATIONS_DIR)).filter((n) => /^\d{4}_[a-z0-9_]+\.sql$/.test(n)).sort();
  return names.map((name) => ({ id: Number(name.slice(0, 4)), name, file: path.join(MIGRATIONS_DIR, name) }));
}

/** Brings the database up to date; returns the names of the files it applied. */
export async function migrate(pool: Pool): Promise<string[]> {
  // Our triggers call graphile_worker.add_jobs and fila_llm_housekeeping.add_job, so their schemas come first.
  await runGraphileWorkerMigrations({ pgPool: pool, logger: undefined });
  await runGraphileWorkerMigrations({ pgPool: pool, logger: undefined, schema: HOUSEKEEPING_SCHEMA });
  const applied: string[] = [];
  const client = await pool.connect();
  try {
    for (const migration of await listMigrations()) {
      await client.query("BEGIN");
      try {
        // Serialises concurrent migrators: the second one waits, then sees the row.
        await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_KEY]);
        await client.query(`CREATE TABLE IF NOT EXISTS fila_llm_migrations (
          id INT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`);
        const done = await client.query("SELECT 1 FROM fila_llm_migrations WHERE id = $1", [migration.id]);
        if (done.rowCount === 0) {
          await client.query(await readFile(migration.file, "utf8"));
          await client.query("INSERT INTO fila_llm_migrations (id, name) VALUES ($1, $2)", [migration.id, migration.name]);
          applied.push(migration.name);
        }
        await client.query("COMMIT");
      } catch (error) {
        await client.query("ROLLBACK");
        throw new Error(`migration ${migration.name} failed: ${(error as Error).message}`);
      }
    }
  } finally {
    client.release();
  }
  return applied;
}
