/**
 * Housekeeping beside the LLM's slot: window_gate and enqueue_prompts run in
 * their own graphile-worker queue and runner, never in the slot that feeds
 * the LLM; and the every-minute repair of rows that lost their job looks only
 * at the queue's head.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { enqueueOrphans } from "../src/sql/jobs";
import { testBed } from "./support/bed";
import { insert, numbered } from "./support/db";
import { eventually, testEnv } from "./support/worker";

const bed = testBed();

async function housekeepingJobs(): Promise<number> {
  const { rows } = await bed.db.pool.query("SELECT count(*)::int AS n FROM fila_llm_housekeeping._private_jobs");
  return rows[0].n;
}

async function jobOrder(): Promise<number[]> {
  const { rows } = await bed.db.pool.query("SELECT prompt_id FROM fila_llm_jobs ORDER BY run_at, job_id");
  return rows.map((r) => r.prompt_id);
}

describe("housekeeping beside the LLM's slot", () => {
  test("while an 8 s LLM call holds the only slot, window_gate runs and a 5,000-row INSERT gets all its jobs; the LLM never has two requests", async () => {
    bed.llm.behaviour = (req) => (req.prompt === "larga" ? { delayMs: 8_000 } : {});
    const worker = await bed.start(testEnv(bed.llm.origin));
    await insert(bed.db.pool, "larga");
    await eventually(async () => bed.llm.generateRequests.length === 1, 5_000, "the long call to start");
    const call = bed.llm.generateRequests[0];

    await bed.db.pool.query("SELECT fila_llm_housekeeping.add_job('window_gate')");
    await bed.db.pool.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'lote ' || g FROM generate_series(1, 5000) g");
    await eventually(async () => (await housekeepingJobs()) === 0, 6_000, "window_gate and enqueue_prompts to finish");
    assert.equal(call.endedAtMs, null, "the long call is still in flight");
    assert.equal((await jobOrder()).filter((id) => id !== 1).length, 5_000, "every row of the INSERT has its job");
    assert.ok(worker.logs.some((l) => l.includes("enqueued the prompts of a bulk statement, ids 2–5001")));

    const { rows } = await bed.db.pool.query("SELECT DISTINCT task_identifier FROM graphile_worker.jobs");
    assert.deepEqual(rows.map((r) => r.task_identifier), ["process_prompt"], "the prompts' queue holds prompts only");
    await bed.llm.waitForRequests(5, 10_000);
    assert.equal(bed.llm.maxInFlight, 1);
  });
});

describe("the repair of rows that lost their job", () => {
  test("looks only at the oldest pendiente rows: an orphan there is re-enqueued in its FIFO place, one further back once it reaches the head", async () => {
    const ids = await insert(bed.db.pool, ...numbered("fila", 20));
    // Lost jobs, as an operator's graphile_worker.remove_job (or a crash at the wrong instant) leaves them.
    await bed.db.pool.query("SELECT graphile_worker.remove_job(fila_llm_job_key(id)) FROM unnest($1::int[]) AS id", [[ids[1], ids[14]]]);
    assert.deepEqual(await enqueueOrphans(bed.db.pool, 10), [ids[1]], "only the head's orphan");
    assert.deepEqual(await jobOrder(), ids.filter((id) => id !== ids[14]), "back in its place, ahead of every later row");

    // The first fourteen are answered: the other orphan is now at the head.
    await bed.db.pool.query("UPDATE fila_llm_anahuac SET estatus = 'listo' WHERE id < $1", [ids[14]]);
    await bed.db.pool.query("SELECT graphile_worker.remove_job(fila_llm_job_key(id)) FROM unnest($1::int[]) AS id", [ids.slice(0, 14)]);
    const [later] = await insert(bed.db.pool, "posterior");
    assert.deepEqual(await enqueueOrphans(bed.db.pool, 10), [ids[14]]);
    assert.deepEqual(await jobOrder(), [...ids.slice(14), later], "the orphan runs before the rows after it");
    assert.deepEqual(await enqueueOrphans(bed.db.pool, 10), [], "nothing twice");
  });

  test("orphans with no job after them at the head go just after the jobs before them; a head that lost every job goes to the front, in id order", async () => {
    const ids = await insert(bed.db.pool, ...numbered("cola", 6));
    const removeJobs = (of: number[]) => bed.db.pool.query("SELECT graphile_worker.remove_job(fila_llm_job_key(id)) FROM unnest($1::int[]) AS id", [of]);
    await removeJobs(ids.slice(4));
    assert.deepEqual(await enqueueOrphans(bed.db.pool, 6), ids.slice(4));
    assert.deepEqual(await jobOrder(), ids, "after the rows before them, in id order");

    await removeJobs(ids);
    const [later] = await insert(bed.db.pool, "después");
    assert.deepEqual(await enqueueOrphans(bed.db.pool, 6), ids);
    assert.deepEqual(await jobOrder(), [...ids, later], "the whole head, before everything that waits");
  });

  test("a row whose job graphile-worker gave up on counts as lost; none is repaired while a bulk statement's jobs are still being added", async () => {
    const [failed] = await insert(bed.db.pool, "agotada");
    await bed.db.pool.query("UPDATE graphile_worker._private_jobs SET attempts = max_attempts WHERE key = fila_llm_job_key($1)", [failed]);
    await bed.db.pool.query(
      "SELECT fila_llm_housekeeping.add_job('enqueue_prompts', '[]'::json)",
    );
    assert.deepEqual(await enqueueOrphans(bed.db.pool), [], "waits for the bulk statement");
    await bed.db.pool.query("DELETE FROM fila_llm_housekeeping._private_jobs");
    assert.deepEqual(await enqueueOrphans(bed.db.pool), [failed]);
    const { rows } = await bed.db.pool.query("SELECT attempts, max_attempts FROM fila_llm_jobs WHERE key = fila_llm_job_key($1)", [failed]);
    assert.ok(rows[0].attempts < rows[0].max_attempts, "a live job again");
  });
});
