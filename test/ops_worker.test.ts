/**
 * The steering functions with a real worker in this process and the test LLM
 * server: pause, resume, open-now, cancel and retry change what the worker
 * does, and window_gate reports the night. The worker's clock is real time
 * shifted by an offset, as in window_worker.test.ts.
 */
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";
import { testBed } from "./support/bed";
import { insert } from "./support/db";
import { seedRun } from "./support/ops";
import { eventually, MovableClock, testEnv } from "./support/worker";

const bed = testBed();
const movable = new MovableClock();
const clock = movable.now;
const setClock = (utc: string) => movable.set(utc);
const nightEnv = () => testEnv(bed.llm.origin, { WINDOW_START: "01:00", WINDOW_END: "06:00", WINDOW_TZ: "UTC" });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// The gate caches fila_llm_control for 1 s.
const CONTROL_CACHE_MS = 1100;

/**
 * A one-hour window twelve hours from the real now. open_now() sets
 * open_until by the database's clock, so these tests keep the worker's clock
 * real and move the window instead.
 */
function closedNowEnv() {
  const h = (new Date().getUTCHours() + 12) % 24;
  const hhmm = (x: number) => `${String(x).padStart(2, "0")}:00`;
  return testEnv(bed.llm.origin, { WINDOW_START: hhmm(h), WINDOW_END: h === 23 ? "24:00" : hhmm(h + 1), WINDOW_TZ: "UTC" });
}

beforeEach(() => {
  movable.reset();
});

async function row(id: number) {
  const { rows } = await bed.db.pool.query(
    `SELECT a.estatus, a.respuesta, o.error_message FROM fila_llm_anahuac a
       LEFT JOIN fila_llm_outcome o ON o.prompt_id = a.id WHERE a.id = $1`,
    [id],
  );
  return rows[0];
}

async function allListo(ids: number[]): Promise<boolean> {
  const { rows } = await bed.db.pool.query("SELECT count(*)::int AS n FROM fila_llm_anahuac WHERE id = ANY($1) AND estatus = 'listo'", [ids]);
  return rows[0].n === ids.length;
}

describe("pause and resume, with a real worker", () => {
  test("paused: no LLM request inside the window; resume: the queue starts within 5 s", async () => {
    setClock("2026-11-27T03:00:00Z");
    await bed.db.pool.query("SELECT fila_llm_pause()");
    await bed.start(nightEnv(), { clock });
    const ids = await insert(bed.db.pool, "uno", "dos", "tres");
    await sleep(2500);
    assert.equal(bed.llm.generateRequests.length, 0, "no request while paused, although the window is open");
    assert.deepEqual((await Promise.all(ids.map(row))).map((r) => r.estatus), ["pendiente", "pendiente", "pendiente"]);

    const resumedAtMs = Date.now();
    await bed.db.pool.query("SELECT fila_llm_resume()");
    await bed.llm.waitForRequests(3, 10_000);
    assert.ok(bed.llm.generateRequests[0].startedAtMs - resumedAtMs < 5000, "started within 5 s of resume");
    await eventually(() => allListo(ids), 5000, "all three answered");
  });

  test("a pause during the night lets the running prompt finish and starts no other", async () => {
    setClock("2026-11-27T03:00:00Z");
    bed.llm.behaviour = () => ({ delayMs: 1500 });
    await bed.start(nightEnv(), { clock });
    const ids = await insert(bed.db.pool, "primero", "segundo", "tercero");
    await eventually(async () => bed.llm.generateRequests.length >= 1, 5000, "the first request");
    await bed.db.pool.query("SELECT fila_llm_pause()");
    await eventually(async () => (await row(ids[0])).estatus === "listo", 5000, "the running prompt to finish");
    await sleep(2500);
    assert.equal(bed.llm.generateRequests.length, 1);
    assert.equal((await row(ids[1])).estatus, "pendiente");
  });
});

describe("open-now, with a real worker", () => {
  test("open-now: requests outside the window, one at a time; resume returns to the schedule", async () => {
    await bed.start(closedNowEnv());
    const ids = await insert(bed.db.pool, "urgente 1", "urgente 2", "urgente 3");
    await sleep(2000);
    assert.equal(bed.llm.generateRequests.length, 0, "the window is closed");

    const openedAtMs = Date.now();
    await bed.db.pool.query("SELECT fila_llm_open_now(interval '2 hours')");
    await bed.llm.waitForRequests(3, 10_000);
    assert.ok(bed.llm.generateRequests[0].startedAtMs - openedAtMs < 5000, "started within 5 s of open-now");
    assert.equal(bed.llm.maxInFlight, 1, "still one at a time");
    await eventually(() => allListo(ids), 5000, "the urgent batch");

    await bed.db.pool.query("SELECT fila_llm_resume()");
    await sleep(CONTROL_CACHE_MS);
    const [later] = await insert(bed.db.pool, "después de resume");
    await sleep(2500);
    assert.equal(bed.llm.generateRequests.length, 3, "back to the schedule: the window is closed");
    assert.equal((await row(later)).estatus, "pendiente");
  });

  test("an open-now that has run out starts nothing; a new one starts the waiting prompt", async () => {
    await bed.start(closedNowEnv());
    await bed.db.pool.query("SELECT fila_llm_open_now(interval '1 second')");
    await sleep(1500);
    const [late] = await insert(bed.db.pool, "tarde");
    await sleep(2500);
    assert.equal(bed.llm.generateRequests.length, 0, "the 1 s open-now is over and the window is closed");
    assert.equal((await row(late)).estatus, "pendiente");
    // The same worker and prompt: what kept it waiting was the expiry, nothing else.
    const reopenedAtMs = Date.now();
    await bed.db.pool.query("SELECT fila_llm_open_now(interval '2 hours')");
    await bed.llm.waitForRequests(1, 10_000);
    assert.ok(bed.llm.generateRequests[0].startedAtMs - reopenedAtMs < 5000, "started within 5 s of the new open-now");
    await eventually(async () => (await row(late)).estatus === "listo", 5000, "the late prompt");
  });
});

describe("cancel and retry, with a real worker", () => {
  test("a cancelled prompt is never sent; one cancelled during its request keeps \"cancelled by operator\", not the answer", async () => {
    setClock("2026-11-27T03:00:00Z");
    bed.llm.behaviour = (req) => (req.prompt === "lento" ? { delayMs: 1500 } : {});
    const worker = await bed.start(nightEnv(), { clock });
    const [slow, cancelled, normal] = await insert(bed.db.pool, "lento", "cancelado", "normal");
    await eventually(async () => bed.llm.generateRequests.length >= 1, 5000, "the slow request");
    await bed.db.pool.query("SELECT fila_llm_cancel($1), fila_llm_cancel($2)", [cancelled, slow]);
    await eventually(async () => (await row(normal)).estatus === "listo", 10_000, "the next prompt");
    assert.deepEqual(bed.llm.generateRequests.map((r) => r.prompt), ["lento", "normal"]);
    assert.deepEqual(await row(slow), { estatus: "error", respuesta: null, error_message: "cancelled by operator" });
    assert.deepEqual(await row(cancelled), { estatus: "error", respuesta: null, error_message: "cancelled by operator" });
    assert.ok(worker.logs.some((l) => l.includes(`prompt ${slow} answered, but the row was no longer pendiente`)));
    await eventually(async () => (await bed.db.pool.query("SELECT 1 FROM fila_llm_jobs")).rowCount === 0, 5000, "no job left");
  });

  test("retry by id, of errors since a date, and of all errors: each errored prompt runs again and ends listo", async () => {
    setClock("2026-11-27T03:00:00Z");
    await bed.start(nightEnv(), { clock });
    const error = (finishedAt: string) => seedRun(bed.db.pool, { estatus: "error", finishedAt, seconds: 1, message: "HTTP 500", prompt: `falló ${finishedAt}` });
    const byId = await error("2026-11-20T03:00:00Z");
    const older = await error("2026-11-24T03:00:00Z");
    const newer = await error("2026-11-25T03:00:00Z");

    await bed.db.pool.query("SELECT fila_llm_retry($1)", [byId]);
    await eventually(() => allListo([byId]), 10_000, "the retried prompt");
    assert.equal((await row(older)).estatus, "error");

    await bed.db.pool.query("SELECT fila_llm_retry_errors('2026-11-25T00:00:00Z')");
    await eventually(() => allListo([newer]), 10_000, "the errors since the 25th");
    assert.equal((await row(older)).estatus, "error");

    await bed.db.pool.query("SELECT fila_llm_retry_errors()");
    await eventually(() => allListo([older]), 10_000, "every error");
    assert.equal(bed.llm.generateRequests.length, 3);
    assert.equal((await row(older)).error_message, null, "the outcome now records the success");
  });
});

describe("window_gate's report of the night", () => {
  async function runGate(): Promise<void> {
    await bed.db.pool.query("SELECT fila_llm_housekeeping.add_job('window_gate')");
    await eventually(
      async () => (await bed.db.pool.query("SELECT 1 FROM fila_llm_housekeeping.jobs WHERE task_identifier = 'window_gate'")).rowCount === 0,
      5000,
      "the window_gate job",
    );
  }

  test("at the opening the pending count, every few minutes progress with an ETA, at the close a summary of the night", async () => {
    setClock("2026-11-27T02:00:00Z");
    await bed.db.pool.query("UPDATE fila_llm_control SET window_open = false");
    const worker = await bed.start(nightEnv(), { clock });
    // One row held back an hour, so that something remains.
    const client = await bed.db.pool.connect();
    try {
      await client.query("BEGIN");
      const { rows } = await client.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('para luego') RETURNING id");
      await client.query("UPDATE graphile_worker._private_jobs SET run_at = now() + interval '1 hour' WHERE key = fila_llm_job_key($1)", [rows[0].id]);
      await client.query("COMMIT");
    } finally {
      client.release();
    }
    const ids = await insert(bed.db.pool, "a", "b");
    await eventually(() => allListo(ids), 10_000, "two answers");

    await runGate();
    assert.ok(worker.logs.some((l) => /queue opened \(01:00–06:00 UTC\): 1 prompts pending/.test(l)), worker.logs.join("\n"));
    const counts = await bed.db.pool.query("SELECT count(*)::int AS n, sum(pendiente)::int AS pendiente FROM fila_llm_counts");
    assert.deepEqual(counts.rows[0], { n: 1, pendiente: 1 }, "window_gate folded the counts into one row");

    // As if the queue had opened 20 minutes ago.
    await bed.db.pool.query("UPDATE fila_llm_control SET window_changed_at = now() - interval '20 minutes'");
    await runGate();
    await runGate();
    const progress = worker.logs.filter((l) => l.includes("progress:"));
    assert.equal(progress.length, 1, "one progress line per period, however often the gate runs");
    assert.match(progress[0], /progress: 2 done \(2 listo, 0 error\), 1 remaining, ETA \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC \(in \d+ s\)/);

    setClock("2026-11-27T06:00:30Z");
    await runGate();
    assert.ok(worker.logs.some((l) => l.includes("queue closed")));
    const summary = worker.logs.filter((l) => l.includes("night summary:"));
    assert.equal(summary.length, 1);
    assert.match(summary[0], /night summary: 2 listo, 0 error in 20 min open; tokens in \d+ \/ out \d+; median [\d.]+ s; LLM busy \d+%; 1 still pendiente/);
  });
});
