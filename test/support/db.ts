/**
 * Test databases. A template database is migrated once per migration set;
 * each test file clones it (CREATE DATABASE … TEMPLATE) and drops its clone,
 * so files cannot disturb one another.
 *
 * The server: TEST_DATABASE_URL if set; else the PostgreSQL at
 * 127.0.0.1:5432 if it answers; else an embedded PostgreSQL that test/run.ts
 * starts (it then passes TEST_DATABASE_URL down to the test files).
 */
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { Client, Pool } from "pg";
import { createPool } from "../../src/db";
import { listMigrations, migrate } from "../../src/migrate";
import type { Queryable } from "../../src/sql/queryable";

export const LOCAL_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres";
// Any fixed number: serialises template creation across test processes.
const TEMPLATE_LOCK_KEY = 7_004_299;
// Templates of other migration sets kept on the server (see ensureTemplate).
const TEMPLATES_KEPT = 4;

/** True if a PostgreSQL answers at this URL within a second. */
export async function answers(url: string): Promise<boolean> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  try {
    await client.connect();
    await client.query("SELECT 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/** The admin URL of the server the tests use (see the file comment). */
export async function serverUrl(): Promise<string> {
  if (process.env.TEST_DATABASE_URL) return process.env.TEST_DATABASE_URL;
  if (await answers(LOCAL_SERVER_URL)) return LOCAL_SERVER_URL;
  throw new Error("no PostgreSQL for the tests: run them with `npm test`, which starts one, or set TEST_DATABASE_URL");
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = "/" + database;
  return u.toString();
}

async function templateName(): Promise<string> {
  const hash = createHash("sha256");
  for (const m of await listMigrations()) hash.update(m.name).update(readFileSync(m.file));
  hash.update(require("graphile-worker/package.json").version);
  return "fila_llm_tpl_" + hash.digest("hex").slice(0, 12);
}

async function ensureTemplate(admin: Client, adminUrl: string): Promise<string> {
  const name = await templateName();
  await admin.query("SELECT pg_advisory_lock($1)", [TEMPLATE_LOCK_KEY]);
  try {
    const { rowCount } = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (rowCount === 0) {
      // Built under another name and renamed, so a half-built template is never used.
      const building = name + "_building";
      await admin.query(`DROP DATABASE IF EXISTS ${building} WITH (FORCE)`);
      await admin.query(`CREATE DATABASE ${building}`);
      const pool = new Pool({ connectionString: withDatabase(adminUrl, building), max: 2 });
      try {
        await migrate(pool);
      } finally {
        await pool.end();
      }
      // pool.end() resolves before the server has closed those sessions, and a
      // database with sessions cannot be renamed.
      for (let i = 0; i < 100; i++) {
        const { rows } = await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1", [building]);
        if (rows[0].n === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await admin.query(`ALTER DATABASE ${building} RENAME TO ${name}`);
      // Older templates go, but not the few newest: another checkout on the
      // same server (a branch with other migrations) may be cloning one now.
      const old = await admin.query(
        `SELECT datname FROM pg_database WHERE datname LIKE 'fila_llm_tpl_%' AND datname NOT LIKE '%_building'
          ORDER BY oid DESC OFFSET $1`,
        [TEMPLATES_KEPT],
      );
      for (const row of old.rows) await admin.query(`DROP DATABASE IF EXISTS ${row.datname} WITH (FORCE)`);
    }
  } finally {
    await admin.query("SELECT pg_advisory_unlock($1)", [TEMPLATE_LOCK_KEY]);
  }
  return name;
}

export interface TestDatabase {
  name: string;
  url: string;
  pool: Pool;
  /** Drops the database (closing the pool first). */
  drop(): Promise<void>;
}

/**
 * A fresh database for one test file: migrated (a clone of the template), or
 * empty with `{ migrated: false }` for the migration tests.
 */
export async function createTestDatabase(options: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const adminUrl = await serverUrl();
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  const name = `fila_llm_t_${process.pid}_${randomBytes(4).toString("hex")}`;
  try {
    if (options.migrated === false) {
      await admin.query(`CREATE DATABASE ${name}`);
    } else {
      const template = await ensureTemplate(admin, adminUrl);
      await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
    }
  } finally {
    await admin.end();
  }
  const url = withDatabase(adminUrl, name);
  const pool = createPool(url, 8);
  let dropped = false;
  return {
    name,
    url,
    pool,
    async drop() {
      if (dropped) return;
      dropped = true;
      await pool.end();
      const c = new Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/**
 * Empties the queue between tests: every job, prompt row and outcome gone
 * (ids start again at 1), and the control row back to its defaults: not
 * paused, not forced open, no window state recorded.
 */
export async function reset(db: Queryable): Promise<void> {
  await db.query(
    `DELETE FROM graphile_worker._private_jobs;
     DELETE FROM fila_llm_housekeeping._private_jobs;
     TRUNCATE fila_llm_anahuac, fila_llm_outcome RESTART IDENTITY;
     UPDATE fila_llm_control SET paused = false, open_until = NULL, window_open = NULL, window_changed_at = NULL, progress_logged_at = NULL`,
  );
}

/** Inserts these prompts in one statement, in this order, as a user would; returns their ids in the same order. */
export async function insert(db: Queryable, ...prompts: string[]): Promise<number[]> {
  const { rows } = await db.query(
    "INSERT INTO fila_llm_anahuac (prompt) SELECT p FROM unnest($1::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n RETURNING id",
    [prompts],
  );
  return rows.map((r) => r.id);
}

/** insert() of a single prompt; returns its id. */
export async function insertOne(db: Queryable, prompt: string): Promise<number> {
  return (await insert(db, prompt))[0];
}

/** "prefix 1" … "prefix n": prompts that tell apart which row a request is for. */
export function numbered(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix} ${i + 1}`);
}
