/**
 * The window with a real worker. The worker's clock is real time shifted by an
 * offset that the tests set, so the window's edges arrive in seconds.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { testBed } from "./support/bed";
import { eventually, MovableClock, testEnv } from "./support/worker";

const bed = testBed();
const movable = new MovableClock();
const clock = movable.now;
const setClock = (utc: string) => movable.set(utc);
const env = () => testEnv(bed.llm.origin, { WINDOW_START: "01:00", WINDOW_END: "06:00", WINDOW_TZ: "UTC" });

async function statuses(): Promise<string[]> {
  const { rows } = await bed.db.pool.query("SELECT estatus FROM fila_llm_anahuac ORDER BY id");
  return rows.map((r) => r.estatus);
}

describe("the window, with a real worker", () => {
  test("nothing starts before 01:00; prompts start within 5 s of the opening", async () => {
    // Started well before the edge: how long start-up takes on a busy machine must not matter.
    setClock("2026-11-27T00:59:00Z");
    await bed.start(env(), { clock });
    await bed.db.pool.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('a las 00:59'), ('también')");
    setClock("2026-11-27T00:59:57Z");
    const opensAtMs = movable.realMs("2026-11-27T01:00:00Z");
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(bed.llm.generateRequests.length, 0, "no request outside the window");
    await bed.llm.waitForRequests(2, 10_000);
    const first = bed.llm.generateRequests[0].startedAtMs;
    assert.ok(first >= opensAtMs, `started ${opensAtMs - first} ms before the opening`);
    assert.ok(first - opensAtMs < 5000, `started ${first - opensAtMs} ms after the opening`);
  });

  test("a prompt inserted inside the window starts within 5 s", async () => {
    setClock("2026-11-27T03:00:00Z");
    await bed.start(env(), { clock });
    const insertedAtMs = Date.now();
    await bed.db.pool.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('a las 03:00')");
    await bed.llm.waitForRequests(1, 10_000);
    assert.ok(bed.llm.generateRequests[0].startedAtMs - insertedAtMs < 5000);
  });

  test("a request running at 06:00 finishes; nothing starts after it, and the rest wait for the next night without using attempts", async () => {
    bed.llm.behaviour = () => ({ delayMs: 3500 });
    setClock("2026-11-27T05:59:00Z");
    await bed.start(env(), { clock });
    setClock("2026-11-27T05:59:58Z");
    const closesAtMs = movable.realMs("2026-11-27T06:00:00Z");
    await bed.db.pool.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'al cierre ' || g FROM generate_series(1, 3) g");
    await bed.llm.waitForRequests(1, 10_000);
    assert.ok(bed.llm.generateRequests[0].endedAtMs! > closesAtMs, "the first request ran across 06:00");
    await eventually(async () => (await statuses())[0] === "listo", 5000, "the running prompt to finish");
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(bed.llm.generateRequests.length, 1, "nothing started after 06:00");
    assert.deepEqual(await statuses(), ["listo", "pendiente", "pendiente"]);
    const { rows } = await bed.db.pool.query(
      "SELECT attempts FROM graphile_worker.jobs WHERE task_identifier = 'process_prompt' ORDER BY run_at",
    );
    assert.deepEqual(rows.map((r) => r.attempts), [0, 0]);

    bed.llm.behaviour = () => ({});
    setClock("2026-11-28T01:00:00Z");
    await eventually(async () => (await statuses()).every((s) => s === "listo"), 10_000, "the next night");
  });

  test("WINDOW_END_POLICY=cancel: a 10-minute request running at 06:00 is cancelled within 5 s; its row stays pendiente, uncharged, and runs first the next night", async () => {
    bed.llm.behaviour = (r) => (r.prompt === "diez minutos" ? { firstTokenDelayMs: 600_000 } : {});
    setClock("2026-11-27T05:59:50Z");
    const worker = await bed.start(testEnv(bed.llm.origin, { WINDOW_START: "01:00", WINDOW_END: "06:00", WINDOW_TZ: "UTC", WINDOW_END_POLICY: "cancel" }), { clock });
    const closesAtMs = movable.realMs("2026-11-27T06:00:00Z");
    const { rows: inserted } = await bed.db.pool.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('diez minutos'), ('después') RETURNING id");
    await eventually(async () => bed.llm.generateRequests.length === 1, 10_000, "the long request to start");
    const call = bed.llm.generateRequests[0];
    await eventually(async () => call.endedAtMs !== null, 20_000, "the long request to end");
    assert.ok(call.clientLeft, "the worker cancelled it");
    const afterEndMs = call.endedAtMs! - closesAtMs;
    assert.ok(afterEndMs >= 0 && afterEndMs < 5000, `cancelled ${afterEndMs} ms after 06:00`);
    await eventually(async () => worker.logs.some((l) => l.includes(`prompt ${inserted[0].id} cancelled at the window's end (WINDOW_END_POLICY=cancel)`)), 5000, "the log line");
    assert.deepEqual(await statuses(), ["pendiente", "pendiente"]);
    const { rows: outcomes } = await bed.db.pool.query("SELECT count(*)::int AS n FROM fila_llm_outcome");
    assert.equal(outcomes[0].n, 0, "no attempt was charged");
    // The cancelled call's own job is gone once graphile-worker records its end, which it does not wait for.
    const jobs = await eventually(async () => {
      const { rows } = await bed.db.pool.query("SELECT prompt_id, failures FROM fila_llm_jobs ORDER BY run_at, job_id");
      return rows.length === 2 ? rows : null;
    }, 5000, "the cancelled call's job to end");
    assert.deepEqual(jobs.map((j) => [j.prompt_id, j.failures]), [[inserted[0].id, 0], [inserted[1].id, 0]], "it kept its place, first");

    bed.llm.behaviour = () => ({});
    bed.llm.requests.length = 0;
    setClock("2026-11-28T01:00:00Z");
    await eventually(async () => (await statuses()).every((st) => st === "listo"), 10_000, "the next night");
    assert.deepEqual(bed.llm.generateRequests.map((r) => r.prompt), ["diez minutos", "después"], "the cancelled prompt ran first");
  });

  test("a worker (re)started in the middle of the window starts the queue within 5 s", async () => {
    setClock("2026-11-27T02:30:00Z");
    await bed.db.pool.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('esperando al worker')");
    const startedAtMs = Date.now();
    await bed.start(env(), { clock });
    await bed.llm.waitForRequests(1, 10_000);
    assert.ok(bed.llm.generateRequests[0].startedAtMs - startedAtMs < 5000);
  });

  test("the window_gate task logs the opening once, with the number pending", async () => {
    setClock("2026-11-27T00:59:59Z");
    await bed.db.pool.query("UPDATE fila_llm_control SET paused = true");
    try {
      const worker = await bed.start(env(), { clock });
      await bed.db.pool.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'n' || g FROM generate_series(1, 4) g");
      await bed.db.pool.query("UPDATE fila_llm_control SET paused = false, window_open = false");
      setClock("2026-11-27T01:00:30Z");
      await new Promise((r) => setTimeout(r, 1100)); // the gate caches the control row for 1 s
      // graphile-worker's crontab would add these once a minute; add them directly.
      await bed.db.pool.query("SELECT fila_llm_housekeeping.add_job('window_gate'); SELECT fila_llm_housekeeping.add_job('window_gate')");
      await eventually(async () => worker.logs.some((l) => /queue opened \(01:00–06:00 UTC\): \d+ prompts pending/.test(l)), 5000, "open log");
      await eventually(async () => (await statuses()).every((s) => s === "listo"), 10_000, "drain");
      assert.equal(worker.logs.filter((l) => l.includes("queue opened")).length, 1);
    } finally {
      await bed.db.pool.query("UPDATE fila_llm_control SET paused = false");
    }
  });
});
