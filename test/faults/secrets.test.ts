/**
 * The database password and the LLM API key never reach a log line or an
 * error message stored in the database, whatever fails: an LLM that echoes
 * the key back in its errors, an unreachable LLM or database, a bad setting.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Client, escapeLiteral } from "pg";
import { createTestDatabase, insertOne, serverUrl, type TestDatabase } from "../support/db";
import { FakeLlm } from "../support/llm_server";
import { eventually, startChildWorker, testEnv, type ChildWorker } from "../support/worker";

const suffix = randomBytes(4).toString("hex");
const ROLE = `fila_llm_secret_${suffix}`;
const PASSWORD = `Contrasena-${randomBytes(6).toString("hex")}`;
const API_KEY = `sk-fila-${randomBytes(12).toString("hex")}`;

let db: TestDatabase;
let llm: FakeLlm;
/** DATABASE_URL with the role's password in it. */
let databaseUrl: string;
const workers: ChildWorker[] = [];

async function admin<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: await serverUrl() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

before(async () => {
  db = await createTestDatabase();
  llm = await FakeLlm.start();
  // pg_hba may trust local connections and never check it; the password is in the URL all the same.
  await admin((c) => c.query(`CREATE ROLE ${ROLE} LOGIN SUPERUSER PASSWORD ${escapeLiteral(PASSWORD)}`));
  const url = new URL(db.url);
  url.username = ROLE;
  url.password = PASSWORD;
  databaseUrl = url.toString();
});
after(async () => {
  for (const w of workers) await w.stop("SIGKILL");
  await llm.stop();
  await db.drop();
  await admin((c) => c.query(`DROP ROLE IF EXISTS ${ROLE}`));
});

function start(env: Record<string, string>): ChildWorker {
  const worker = startChildWorker({ LLM_API_KEY: API_KEY, LOG_LEVEL: "debug", ...env });
  workers.push(worker);
  return worker;
}

function assertNoSecret(lines: string[], where: string): void {
  for (const line of lines) {
    assert.ok(!line.includes(PASSWORD), `the database password appears in ${where}: ${line}`);
    assert.ok(!line.includes(API_KEY), `the API key appears in ${where}: ${line}`);
  }
}

/** Waits for a worker to exit by itself. */
function exitCode(worker: ChildWorker): Promise<number | null> {
  if (worker.process.exitCode !== null) return Promise.resolve(worker.process.exitCode);
  return new Promise((resolve) => worker.process.once("exit", (code) => resolve(code)));
}

describe("secrets", () => {
  test("an LLM that echoes the key in its 400, 401 and 500 errors: neither secret reaches the log or fila_llm_outcome", async () => {
    // Some servers quote the credentials they were given back in their errors.
    const echo = (status: number, auth: string | undefined) => ({
      status,
      rawBody: JSON.stringify({ error: { message: `rejected credentials "${auth}"`, type: "invalid_request_error", code: null } }),
    });
    let refuseKey = true;
    llm.behaviour = (r) => {
      if (r.prompt === "eco 400") return echo(400, r.headers.authorization);
      if (r.prompt === "eco 500") return echo(500, r.headers.authorization);
      if (r.prompt === "eco 401" && refuseKey) return echo(401, r.headers.authorization);
      return {};
    };
    const worker = start({
      ...testEnv(llm.openaiBaseUrl, { LLM_PROVIDER: "openai", LLM_MAX_ATTEMPTS: "1", LLM_OUTAGE_MAX_BACKOFF_SECONDS: "1" }),
      DATABASE_URL: databaseUrl,
    });
    await worker.waitFor(/worker ready/);
    const ids = [await insertOne(db.pool, "eco 400"), await insertOne(db.pool, "eco 500"), await insertOne(db.pool, "eco 401")];
    await worker.waitFor(/LLM configuration fault/);
    refuseKey = false;
    await eventually(
      async () => (await db.pool.query("SELECT 1 FROM fila_llm_anahuac WHERE id = ANY($1) AND estatus = 'pendiente'", [ids])).rowCount === 0,
      20_000,
      "the three rows to finish",
    );
    assert.ok(llm.generateRequests.every((r) => r.headers.authorization === `Bearer ${API_KEY}`), "the key was sent");

    const { rows } = await db.pool.query("SELECT prompt_id, estatus, error_message FROM fila_llm_outcome WHERE prompt_id = ANY($1) ORDER BY prompt_id", [ids]);
    assert.deepEqual(rows.map((r) => r.estatus), ["error", "error", "listo"]);
    // The messages are kept, with the key masked.
    assert.match(rows[0].error_message, /HTTP 400: rejected credentials "Bearer \*\*\*"/);
    assert.match(rows[1].error_message, /HTTP 500: rejected credentials "Bearer \*\*\*"/);
    assert.ok(worker.output.some((l) => l.includes("LLM configuration fault") && l.includes('Bearer ***')));
    const stored = await db.pool.query(
      `SELECT error_message AS m FROM fila_llm_outcome UNION ALL SELECT last_error FROM graphile_worker._private_jobs`,
    );
    assertNoSecret(stored.rows.map((r) => r.m ?? ""), "the database");
    // Stopped, so that the next worker can lead.
    assert.equal(await worker.stop("SIGTERM"), 0);
    assertNoSecret(worker.output, "the log");
  });

  test("an unreachable LLM, in text and JSON logs: no secret in the log", async () => {
    const worker = start({ ...testEnv("http://127.0.0.1:9"), DATABASE_URL: databaseUrl, LOG_FORMAT: "json" });
    await worker.waitFor(/worker ready/);
    await insertOne(db.pool, "sin servidor");
    await worker.waitFor(/LLM unavailable/);
    assert.equal(await worker.stop("SIGTERM"), 0);
    assertNoSecret(worker.output, "the log");
  });

  test("an unreachable database and a missing one: no secret in the log", async () => {
    const down = new URL(databaseUrl);
    down.port = "9";
    const waiting = start({ ...testEnv(llm.origin), DATABASE_URL: down.toString() });
    await waiting.waitFor(/database unreachable while starting; trying again until it is back/);
    assert.equal(await waiting.stop("SIGTERM"), 0);
    assertNoSecret(waiting.output, "the log");

    const missing = new URL(databaseUrl);
    missing.pathname = `/no_existe_${suffix}`;
    const failing = start({ ...testEnv(llm.origin), DATABASE_URL: missing.toString() });
    assert.equal(await exitCode(failing), 1);
    assert.ok(failing.output.some((l) => l.includes("does not exist")));
    assertNoSecret(failing.output, "the log");
  });

  test("bad settings: the process exits 78 naming the variable, and shows no secret", async () => {
    const settings: Record<string, string>[] = [
      { DATABASE_URL: databaseUrl, LLM_TIMEOUT_SECONDS: "nunca" },
      { DATABASE_URL: databaseUrl.replace(/^postgres(ql)?:/, "mysql:") },
    ];
    for (const env of settings) {
      const worker = start({ ...testEnv(llm.origin), ...env });
      assert.equal(await exitCode(worker), 78);
      assert.ok(worker.output.some((l) => /invalid configuration: (LLM_TIMEOUT_SECONDS|DATABASE_URL) must be/.test(l)), worker.output.join("\n"));
      assertNoSecret(worker.output, "the log");
    }
  });
});
