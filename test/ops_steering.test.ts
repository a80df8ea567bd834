/**
 * The steering functions of migrations/0007 and the CLI commands that call
 * them, on seeded rows (no worker here; see ops_worker.test.ts for that).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createPool } from "../src/db";
import { databaseBed } from "./support/bed";
import { cliEnv, runCli, seedRun } from "./support/ops";

const db = databaseBed();

async function row(id: number) {
  const { rows } = await db.pool.query(
    `SELECT a.estatus, a.respuesta, o.estatus AS outcome_estatus, o.error_message
       FROM fila_llm_anahuac a LEFT JOIN fila_llm_outcome o ON o.prompt_id = a.id WHERE a.id = $1`,
    [id],
  );
  return rows[0];
}

async function jobsFor(): Promise<number[]> {
  const { rows } = await db.pool.query("SELECT prompt_id FROM fila_llm_jobs ORDER BY run_at, job_id");
  return rows.map((r) => r.prompt_id);
}

async function control() {
  const { rows } = await db.pool.query("SELECT paused, open_until, now() AS now FROM fila_llm_control");
  return rows[0];
}

/** Three errors: two failed on the 26th (local), one on the 27th; and one listo row. */
async function seedErrors() {
  const old1 = await seedRun(db.pool, { estatus: "error", finishedAt: "2026-11-26T08:00:00Z", seconds: 3, message: "HTTP 500" });
  const old2 = await seedRun(db.pool, { estatus: "error", finishedAt: "2026-11-26T09:00:00Z", seconds: 3, message: "HTTP 500" });
  const recent = await seedRun(db.pool, { estatus: "error", finishedAt: "2026-11-27T08:00:00Z", seconds: 3, message: "bad answer" });
  const listo = await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-27T08:10:00Z", seconds: 3 });
  return { old1, old2, recent, listo };
}

describe("retry", () => {
  test("fila_llm_retry(id) puts one 'error' row back in the queue with a job; a row not in 'error' is left alone", async () => {
    const { old1, old2, listo } = await seedErrors();
    const { rows } = await db.pool.query("SELECT fila_llm_retry($1) AS a, fila_llm_retry($2) AS b, fila_llm_retry(999999) AS c", [old1, listo]);
    assert.deepEqual(rows[0], { a: true, b: false, c: false });
    assert.equal((await row(old1)).estatus, "pendiente");
    assert.equal((await row(old1)).outcome_estatus, "pendiente");
    assert.equal((await row(old2)).estatus, "error");
    assert.equal((await row(listo)).estatus, "listo");
    assert.deepEqual(await jobsFor(), [old1]);
  });

  test("fila_llm_retry_errors() retries every error, FIFO by id; with a date only those that failed since then", async () => {
    const { old1, old2, recent } = await seedErrors();
    // 2026-11-27 00:00 in America/Mexico_City is 06:00Z.
    const since = await db.pool.query("SELECT fila_llm_retry_errors('2026-11-27 00:00 America/Mexico_City') AS n");
    assert.equal(since.rows[0].n, 1);
    assert.deepEqual(await jobsFor(), [recent]);
    const all = await db.pool.query("SELECT fila_llm_retry_errors() AS n");
    assert.equal(all.rows[0].n, 2);
    assert.deepEqual(await jobsFor(), [recent, old1, old2]);
    assert.equal((await db.pool.query("SELECT fila_llm_retry_errors() AS n")).rows[0].n, 0);
  });

  test("`fila-llm retry ID`, `retry --errors` and `retry --errors --since DATE` (local in WINDOW_TZ) call the same functions", async () => {
    const { old1, old2, recent, listo } = await seedErrors();
    const env = cliEnv(db.url);
    let r = await runCli(["retry", String(old1), String(listo)], env);
    assert.equal(r.code, 1, "one of the two could not be retried");
    assert.match(r.stdout, new RegExp(`prompt ${old1} is back in the queue`));
    assert.match(r.stdout, new RegExp(`prompt ${listo} not retried: it is 'listo', not 'error'`));
    assert.equal((await row(old1)).estatus, "pendiente");

    r = await runCli(["retry", "--errors", "--since", "2026-11-27"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /1 prompt\(s\) in 'error' that failed since 2026-11-27 00:00 America\/Mexico_City are back in the queue/);
    assert.equal((await row(recent)).estatus, "pendiente");
    assert.equal((await row(old2)).estatus, "error");

    r = await runCli(["retry", "--errors"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^1 prompt\(s\) in 'error' are back in the queue/m);
    assert.equal((await row(old2)).estatus, "pendiente");

    for (const bad of [["retry"], ["retry", "abc"], ["retry", "--errors", "--since", "ayer"], ["retry", "7", "--since", "2026-11-27"]]) {
      const out = await runCli(bad, env);
      assert.equal(out.code, 64, `${bad.join(" ")}: ${out.stdout}${out.stderr}`);
    }
  });
});

describe("pause, resume and open-now", () => {
  test("fila_llm_pause and fila_llm_resume set the state in fila_llm_control; resume also ends an open-now", async () => {
    await db.pool.query("SELECT fila_llm_pause()");
    assert.equal((await control()).paused, true);
    await db.pool.query("SELECT fila_llm_open_now(interval '30 minutes')");
    const c = await control();
    assert.equal(c.paused, true, "open-now does not lift a pause");
    assert.equal(Math.round((c.open_until.getTime() - c.now.getTime()) / 60_000), 30);
    await db.pool.query("SELECT fila_llm_resume()");
    assert.deepEqual({ ...(await control()), now: null }, { paused: false, open_until: null, now: null });
  });

  test("fila_llm_open_now refuses a duration that is not positive", async () => {
    await assert.rejects(db.pool.query("SELECT fila_llm_open_now(interval '-1 hour')"), /duration must be a positive interval/);
    await assert.rejects(db.pool.query("SELECT fila_llm_open_now(NULL)"), /duration must be a positive interval/);
  });

  test("`fila-llm pause`, `open-now --for 1h30m` and `resume` change the same state", async () => {
    const env = cliEnv(db.url);
    let r = await runCli(["pause"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await control()).paused, true);

    r = await runCli(["open-now", "--for", "1h30m"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /open until \d{4}-\d{2}-\d{2} \d{2}:\d{2} America\/Mexico_City \(1 h 30 min\)/);
    assert.match(r.stdout, /PAUSED, and a pause wins/);
    const c = await control();
    assert.equal(Math.round((c.open_until.getTime() - c.now.getTime()) / 60_000), 90);

    r = await runCli(["resume"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /resumed: back to the normal schedule \(01:00–06:00 America\/Mexico_City\)/);
    assert.deepEqual({ ...(await control()), now: null }, { paused: false, open_until: null, now: null });

    r = await runCli(["open-now"], env);
    assert.match(r.stdout, /\(2 h 00 min\)/, "two hours by default");
    assert.doesNotMatch(r.stdout, /PAUSED/);
    for (const bad of [["open-now", "--for", "soon"], ["open-now", "--for", "0m"], ["pause", "now"]]) {
      assert.equal((await runCli(bad, env)).code, 64, bad.join(" "));
    }
  });
});

describe("cancel", () => {
  test("fila_llm_cancel(id) marks a pending row 'error' with \"cancelled by operator\" and removes its job", async () => {
    const keep = await seedRun(db.pool, { estatus: "pendiente" });
    const cancel = await seedRun(db.pool, { estatus: "pendiente" });
    const done = await seedRun(db.pool, { estatus: "listo", finishedAt: new Date().toISOString(), seconds: 1 });
    assert.deepEqual(await jobsFor(), [keep, cancel]);
    const cancelled = async (id: number) => (await db.pool.query("SELECT fila_llm_cancel($1) AS ok", [id])).rows[0].ok;
    assert.equal(await cancelled(cancel), true);
    assert.equal(await cancelled(cancel), false, "already cancelled");
    assert.equal(await cancelled(done), false, "not pendiente");
    assert.deepEqual(await row(cancel), { estatus: "error", respuesta: null, outcome_estatus: "error", error_message: "cancelled by operator" });
    assert.equal((await row(done)).estatus, "listo");
    assert.deepEqual(await jobsFor(), [keep]);
  });

  test("cancelling a prompt whose job is running takes its key away, so the job cannot run again", async () => {
    const id = await seedRun(db.pool, { estatus: "pendiente" });
    await db.pool.query(
      "UPDATE graphile_worker._private_jobs SET locked_at = now(), locked_by = 'worker-test' WHERE key = fila_llm_job_key($1)",
      [id],
    );
    await db.pool.query("SELECT fila_llm_cancel($1)", [id]);
    const { rows } = await db.pool.query("SELECT key, attempts, max_attempts FROM fila_llm_jobs WHERE prompt_id = $1", [id]);
    assert.equal(rows.length, 1, "a locked job is not deleted under the worker");
    assert.equal(rows[0].key, null);
    assert.equal(rows[0].attempts, rows[0].max_attempts);
    assert.equal((await row(id)).error_message, "cancelled by operator");
  });

  test("`fila-llm cancel ID` calls the same function and says why a row could not be cancelled", async () => {
    const id = await seedRun(db.pool, { estatus: "pendiente" });
    const env = cliEnv(db.url);
    let r = await runCli(["cancel", String(id)], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`prompt ${id} cancelled`));
    assert.equal((await row(id)).error_message, "cancelled by operator");
    r = await runCli(["cancel", String(id), "999999"], env);
    assert.equal(r.code, 1);
    assert.match(r.stdout, new RegExp(`prompt ${id} not cancelled: it is 'error', not 'pendiente'`));
    assert.match(r.stdout, /prompt 999999 not cancelled: there is no such row/);
  });
});

describe("privileges", () => {
  test("the steering functions are not for PUBLIC; granted EXECUTE, a role with no table rights can steer", async () => {
    const role = `fila_operator_${db.name.slice(-8)}`;
    await db.pool.query(`DROP ROLE IF EXISTS ${role}`);
    // A password, for servers that check one (the embedded PostgreSQL does).
    await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD 'role-test-pw'`);
    const url = new URL(db.url);
    url.username = role;
    url.password = "role-test-pw";
    const operator = createPool(url.toString(), 1);
    try {
      await assert.rejects(operator.query("SELECT fila_llm_pause()"), /permission denied for function fila_llm_pause/);
      await db.pool.query(`GRANT EXECUTE ON FUNCTION fila_llm_pause(), fila_llm_resume() TO ${role}`);
      await operator.query("SELECT fila_llm_pause()");
      assert.equal((await control()).paused, true);
      await assert.rejects(operator.query("SELECT paused FROM fila_llm_control"), /permission denied/);
      await operator.query("SELECT fila_llm_resume()");
      assert.equal((await control()).paused, false);
    } finally {
      await operator.end();
      await db.pool.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }
  });
});
