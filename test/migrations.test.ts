import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { readFileSync } from "node:fs";
import path from "node:path";
import { Pool } from "pg";
import { createPool } from "../src/db";
import { listMigrations, migrate } from "../src/migrate";
import { projectRoot } from "../src/paths";
import { countByEstatus } from "../src/sql/prompts";
import { createTestDatabase, type TestDatabase } from "./support/db";

const LEGACY_DDL = `CREATE TABLE fila_llm_anahuac (
    id SERIAL PRIMARY KEY,
    prompt TEXT NOT NULL,
    respuesta TEXT,
    fecha_in TIMESTAMP DEFAULT NOW(),
    fecha_out TIMESTAMP,
    tokens_in INT,
    tokens_out INT,
    estatus VARCHAR(10) NOT NULL DEFAULT 'pendiente' CHECK (estatus IN ('pendiente', 'listo', 'error')),
    tiempo_ejecucion NUMERIC(10, 2)
)`;

/** Columns, constraints, indexes and triggers of the legacy table, as the catalog shows them. */
async function legacyShape(pool: Pool) {
  const columns = await pool.query(
    `SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale, is_nullable, column_default
       FROM information_schema.columns WHERE table_name = 'fila_llm_anahuac' ORDER BY ordinal_position`,
  );
  const constraints = await pool.query(
    `SELECT contype, pg_get_constraintdef(oid) AS def FROM pg_constraint
      WHERE conrelid = 'fila_llm_anahuac'::regclass ORDER BY contype, def`,
  );
  return { columns: columns.rows, constraints: constraints.rows };
}

/** The CREATE INDEX statements of the DBA's block in docs/operations.md (Least privilege, step 1). */
function dbaIndexStatements(): string[] {
  const doc = readFileSync(path.join(projectRoot, "docs", "operations.md"), "utf8");
  const block = /<!-- least-privilege: as the DBA, before migrating -->[\s\S]*?```sql\n([\s\S]*?)```/.exec(doc);
  assert.ok(block, "the DBA's block in docs/operations.md");
  return [...block[1].matchAll(/^(CREATE INDEX [^;]*);$/gm)].map((m) => m[1]);
}

const databases: TestDatabase[] = [];
after(async () => {
  for (const db of databases) await db.drop();
});

async function emptyDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase({ migrated: false });
  databases.push(db);
  return db;
}

describe("migrations", () => {
  test("on an empty database they create the legacy table exactly as the old system did", async () => {
    const reference = await emptyDatabase();
    await reference.pool.query(LEGACY_DDL);
    const ours = await emptyDatabase();
    const applied = await migrate(ours.pool);
    const files = (await listMigrations()).map((m) => m.name);
    assert.equal(files[0], "0001_legacy_table.sql");
    assert.ok(files.length >= 8, `migration files: ${files.join(", ")}`);
    assert.deepEqual(applied, files, "every file, once, in order");
    assert.deepEqual(await legacyShape(ours.pool), await legacyShape(reference.pool));
    const { rows } = await ours.pool.query("SELECT count(*)::int AS n FROM graphile_worker.jobs");
    assert.equal(rows[0].n, 0);
  });

  test("an existing table keeps its shape and rows, and its pendiente rows are enqueued oldest first", async () => {
    const db = await emptyDatabase();
    await db.pool.query(LEGACY_DDL);
    await db.pool.query(`INSERT INTO fila_llm_anahuac (prompt, estatus, respuesta) VALUES
      ('uno', 'pendiente', NULL), ('dos', 'listo', 'hecho'), ('tres', 'pendiente', NULL), ('cuatro', 'error', NULL), ('cinco', 'pendiente', NULL)`);
    const before = await db.pool.query("SELECT * FROM fila_llm_anahuac ORDER BY id");
    const shapeBefore = await legacyShape(db.pool);

    await migrate(db.pool);

    assert.deepEqual((await db.pool.query("SELECT * FROM fila_llm_anahuac ORDER BY id")).rows, before.rows);
    assert.deepEqual(await legacyShape(db.pool), shapeBefore);
    const jobs = await db.pool.query(
      "SELECT prompt_id FROM fila_llm_jobs ORDER BY run_at, job_id",
    );
    assert.deepEqual(jobs.rows.map((r) => r.prompt_id), [1, 3, 5]);
    assert.deepEqual(await countByEstatus(db.pool), { pendiente: 3, listo: 1, error: 1 }, "the rows already there are counted");
  });

  test("a second run changes nothing", async () => {
    const db = await emptyDatabase();
    await migrate(db.pool);
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('hola')");
    const snapshot = async () => ({
      jobs: (await db.pool.query("SELECT id, key, run_at FROM graphile_worker.jobs ORDER BY id")).rows,
      migrations: (await db.pool.query("SELECT * FROM fila_llm_migrations ORDER BY id")).rows,
      functions: (await db.pool.query("SELECT proname, prosrc FROM pg_proc WHERE proname LIKE 'fila_llm%' ORDER BY 1")).rows,
    });
    const before = await snapshot();
    assert.deepEqual(await migrate(db.pool), []);
    assert.deepEqual(await snapshot(), before);
  });

  test("two processes migrating at once apply each file once", async () => {
    const db = await emptyDatabase();
    const second = createPool(db.url, 2);
    try {
      const [a, b] = await Promise.all([migrate(db.pool), migrate(second)]);
      const files = (await listMigrations()).map((m) => m.name);
      assert.deepEqual([...a, ...b].sort(), files, `applied: ${[...a, ...b].join(", ")}`);
      const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM fila_llm_migrations");
      assert.equal(rows[0].n, files.length);
    } finally {
      await second.end();
    }
  });

  test("a role that may only INSERT into the table can still enqueue a prompt", async () => {
    const db = await emptyDatabase();
    await migrate(db.pool);
    const role = `fila_insert_only_${db.name.slice(-8)}`;
    await db.pool.query(`DROP ROLE IF EXISTS ${role}`);
    // A password, for servers that check one (the embedded PostgreSQL does).
    await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD 'role-test-pw'`);
    try {
      await db.pool.query(`GRANT INSERT ON fila_llm_anahuac TO ${role}; GRANT USAGE ON SEQUENCE fila_llm_anahuac_id_seq TO ${role}`);
      const url = new URL(db.url);
      url.username = role;
      url.password = "role-test-pw";
      const limited = createPool(url.toString(), 1);
      try {
        await limited.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('desde un rol limitado')");
        await assert.rejects(limited.query("SELECT * FROM graphile_worker.jobs"), /permission denied/);
      } finally {
        await limited.end();
      }
      const { rows } = await db.pool.query("SELECT prompt_id FROM fila_llm_jobs");
      assert.deepEqual(rows, [{ prompt_id: 1 }]);
    } finally {
      await db.pool.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }
  });
  test("as a role that does not own the legacy table, 0015 names the indexes its owner must create, and goes through once they exist", async () => {
    const db = await emptyDatabase();
    await db.pool.query(LEGACY_DDL);
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('de antes')");
    const role = `fila_not_owner_${db.name.slice(-8)}`;
    await db.pool.query(`DROP ROLE IF EXISTS ${role}`);
    await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD 'role-test-pw'`);
    try {
      // What docs/operations.md (Least privilege, step 1) grants the worker role.
      await db.pool.query(`GRANT USAGE, CREATE ON SCHEMA public TO ${role}; GRANT CREATE ON DATABASE ${db.name} TO ${role};
                           GRANT SELECT, UPDATE, TRIGGER ON fila_llm_anahuac TO ${role}`);
      const url = new URL(db.url);
      url.username = role;
      url.password = "role-test-pw";
      const worker = createPool(url.toString(), 1);
      try {
        await assert.rejects(migrate(worker), (error: Error) => {
          assert.match(error.message, /migration 0015_operator_scale\.sql failed: only the owner of fila_llm_anahuac may add its indexes/);
          for (const statement of dbaIndexStatements()) assert.ok(error.message.includes(statement), `${statement}\nin: ${error.message}`);
          return true;
        });
        await db.pool.query(dbaIndexStatements().join(";\n"));
        const fromThisOne = (await listMigrations()).filter((m) => m.id >= 15).map((m) => m.name);
        assert.deepEqual(await migrate(worker), fromThisOne, "0015 and the ones after it");
        assert.deepEqual(await countByEstatus(worker), { pendiente: 1, listo: 0, error: 0 });
      } finally {
        await worker.end();
      }
    } finally {
      // CASCADE: the legacy table (not the role's) has triggers on the role's functions.
      await db.pool.query(`DROP OWNED BY ${role} CASCADE; DROP ROLE ${role}`);
    }
  });

  test("the index statements docs/operations.md gives the DBA are the ones migrations/0015 would run", () => {
    const migration = readFileSync(path.join(projectRoot, "migrations", "0015_operator_scale.sql"), "utf8");
    const inMigration = [...migration.matchAll(/'(CREATE INDEX [^\n]*?)'\]/g)].map((m) => m[1].replaceAll("''", "'"));
    assert.equal(inMigration.length, 3);
    assert.deepEqual(dbaIndexStatements(), inMigration);
  });
});
