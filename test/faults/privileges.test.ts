/**
 * docs/operations.md (Least privilege), run as written: its SQL on a fresh database (names
 * made unique), migrations as the worker role, then each claim checked. The
 * app role can insert (and so enqueue) and read, and nothing else; the worker
 * role migrates and answers prompts without being a superuser.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Client } from "pg";
import { projectRoot } from "../../src/paths";
import { createTestDatabase, serverUrl, type TestDatabase } from "../support/db";
import { defaultAnswer, FakeLlm } from "../support/llm_server";
import { eventually, startChildWorker, testEnv, type ChildWorker } from "../support/worker";

const suffix = randomBytes(4).toString("hex");
const APP_ROLE = `fila_llm_app_${suffix}`;
const WORKER_ROLE = `fila_llm_worker_${suffix}`;
const OPERATOR_ROLE = `fila_llm_operator_${suffix}`;

let db: TestDatabase;
let llm: FakeLlm;
let worker: ChildWorker | null = null;

/** The SQL block that follows `<!-- least-privilege: {marker} -->` in the doc, with this test's names. */
function docSql(marker: string): string {
  const doc = readFileSync(path.join(projectRoot, "docs", "operations.md"), "utf8");
  const match = new RegExp(`<!-- least-privilege: ${marker} -->\\s*(?:<!--[^>]*-->\\s*)*\`\`\`sql\\n([\\s\\S]*?)\`\`\``).exec(doc);
  assert.ok(match, `docs/operations.md (Least privilege) has a SQL block marked "${marker}"`);
  return match[1]
    .replace(/\bfila_llm_app\b/g, APP_ROLE)
    .replace(/\bfila_llm_worker\b/g, WORKER_ROLE)
    .replace(/\bfila_llm_operator\b/g, OPERATOR_ROLE)
    .replace(/\bfila_llm\b/g, db.name);
}

function urlAs(role: string, password: string): string {
  const url = new URL(db.url);
  url.username = role;
  url.password = password;
  return url.toString();
}

async function connectAs(role: string, password: string): Promise<Client> {
  const client = new Client({ connectionString: urlAs(role, password) });
  await client.connect();
  return client;
}

async function refused(client: Client, sql: string): Promise<void> {
  await assert.rejects(client.query(sql), (e: { code?: string }) => e.code === "42501", `expected permission denied for: ${sql}`);
}

before(async () => {
  db = await createTestDatabase({ migrated: false });
  llm = await FakeLlm.start();
});
after(async () => {
  await worker?.stop("SIGKILL");
  await llm.stop();
  await db.drop();
  const admin = new Client({ connectionString: await serverUrl() });
  await admin.connect();
  try {
    await admin.query(`DROP ROLE IF EXISTS ${APP_ROLE}`);
    await admin.query(`DROP ROLE IF EXISTS ${WORKER_ROLE}`);
    await admin.query(`DROP ROLE IF EXISTS ${OPERATOR_ROLE}`);
  } finally {
    await admin.end();
  }
});

describe("the least-privilege setup of docs/operations.md (Least privilege)", () => {
  test("the app role only inserts and reads; the worker role migrates and answers without being a superuser", async () => {
    // Production: the legacy table exists, owned by the DBA, with a backlog.
    await db.pool.query(readFileSync(path.join(projectRoot, "migrations", "0001_legacy_table.sql"), "utf8"));
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('de antes de fila-llm')");
    await db.pool.query(docSql("as the DBA, before migrating"));

    const migrateRun = spawn(process.execPath, [path.join(projectRoot, "dist", "src", "cli.js"), "migrate"], {
      cwd: projectRoot,
      env: { PATH: process.env.PATH ?? "", DATABASE_URL: urlAs(WORKER_ROLE, "change-me-worker") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let migrateOutput = "";
    migrateRun.stdout.on("data", (c) => (migrateOutput += c));
    migrateRun.stderr.on("data", (c) => (migrateOutput += c));
    const code = await new Promise((resolve) => migrateRun.on("exit", resolve));
    assert.equal(code, 0, `npm run migrate as the worker role:\n${migrateOutput}`);
    await db.pool.query(docSql("after migrating"));

    const { rows: roles } = await db.pool.query("SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = ANY($1)", [
      [APP_ROLE, WORKER_ROLE],
    ]);
    assert.ok(roles.length === 2 && roles.every((r) => !r.rolsuper && !r.rolcreatedb && !r.rolcreaterole));
    const { rows: owner } = await db.pool.query("SELECT tableowner FROM pg_tables WHERE tablename = 'fila_llm_anahuac'");
    assert.equal(owner[0].tableowner, "postgres", "the legacy table keeps its owner");

    const app = await connectAs(APP_ROLE, "change-me-app");
    let id: number;
    try {
      id = (await app.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('¿Qué es PostgreSQL?') RETURNING id")).rows[0].id;
      assert.equal((await app.query("SELECT estatus FROM fila_llm_anahuac WHERE id = $1", [id])).rows[0].estatus, "pendiente");
      await app.query("SELECT error_message FROM fila_llm_outcome");
      await refused(app, `UPDATE fila_llm_anahuac SET estatus = 'pendiente' WHERE id = ${id}`);
      await refused(app, `DELETE FROM fila_llm_anahuac WHERE id = ${id}`);
      await refused(app, "SELECT * FROM graphile_worker.jobs");
      await refused(app, "SELECT * FROM graphile_worker._private_jobs");
      await refused(app, `SELECT graphile_worker.add_job('process_prompt', '{"id": 1}')`);
      await refused(app, "SELECT fila_llm_enqueue(ARRAY[1])");
      await refused(app, "UPDATE fila_llm_control SET paused = true");
      await refused(app, "DELETE FROM fila_llm_outcome");
      await refused(app, "CREATE TABLE intruso (x int)");
    } finally {
      await app.end();
    }
    const asWorker = await connectAs(WORKER_ROLE, "change-me-worker");
    try {
      await refused(asWorker, "DELETE FROM fila_llm_anahuac");
      await refused(asWorker, "ALTER TABLE fila_llm_anahuac ADD COLUMN intrusa int");
      await refused(asWorker, "DROP TABLE fila_llm_anahuac");
      await refused(asWorker, "CREATE SCHEMA otro");
    } finally {
      await asWorker.end();
    }
    const { rows: jobs } = await db.pool.query("SELECT prompt_id FROM fila_llm_jobs ORDER BY prompt_id");
    assert.deepEqual(jobs.map((j) => j.prompt_id), [1, id], "the backlog and the app's insert are both enqueued");

    worker = startChildWorker({ ...testEnv(llm.origin), DATABASE_URL: urlAs(WORKER_ROLE, "change-me-worker") });
    await worker.waitFor(/worker ready/);
    const answered = await eventually(
      async () => {
        const { rows } = await db.pool.query("SELECT prompt, estatus, respuesta FROM fila_llm_anahuac ORDER BY id");
        return rows.every((r) => r.estatus === "listo") ? rows : null;
      },
      20_000,
      "both prompts answered by the worker role",
    );
    for (const row of answered) assert.equal(row.respuesta, defaultAnswer(row.prompt));
    assert.equal(await worker.stop("SIGTERM"), 0);
    assert.ok(!worker.output.some((l) => / ERROR /.test(l)), worker.output.filter((l) => / ERROR /.test(l)).join("\n"));
  });

  test("the operators' role steers through the functions only", async () => {
    await db.pool.query(docSql("operators"));
    await db.pool.query("UPDATE fila_llm_anahuac SET estatus = 'error' WHERE id = 1");
    const operator = await connectAs(OPERATOR_ROLE, "change-me-operator");
    try {
      await operator.query("SELECT fila_llm_pause()");
      await operator.query("SELECT fila_llm_resume()");
      assert.equal((await operator.query("SELECT fila_llm_retry(1) AS ok")).rows[0].ok, true);
      assert.equal((await operator.query("SELECT estatus FROM fila_llm_anahuac WHERE id = 1")).rows[0].estatus, "pendiente");
      assert.equal((await operator.query("SELECT count(*)::int AS n FROM fila_llm_jobs WHERE prompt_id = 1")).rows[0].n, 1, "retried and enqueued");
      await refused(operator, "UPDATE fila_llm_anahuac SET estatus = 'pendiente' WHERE id = 2");
      await refused(operator, "UPDATE fila_llm_control SET paused = true");
      await refused(operator, "SELECT * FROM graphile_worker._private_jobs");
    } finally {
      await operator.end();
    }
  });
});
