import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { databaseBed } from "./support/bed";
import { FakeLlm } from "./support/llm_server";
import { eventually, startInProcessWorker, testEnv } from "./support/worker";

const db = databaseBed();

async function jobs() {
  const { rows } = await db.pool.query(
    `SELECT j.job_id, j.prompt_id, j.key, j.flags, j.run_at, g.job_queue_id, g.payload
       FROM fila_llm_jobs j JOIN graphile_worker._private_jobs g ON g.id = j.job_id
      ORDER BY j.run_at, j.job_id`,
  );
  return rows;
}

describe("enqueue trigger", () => {
  test("an INSERT gets exactly one process_prompt job carrying its id, keyed and flagged for the gate", async () => {
    const { rows } = await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('Escribe un poema corto sobre la programación.') RETURNING id");
    const all = await jobs();
    assert.equal(all.length, 1);
    assert.deepEqual(all[0].payload, { id: rows[0].id });
    assert.equal(all[0].key, `fila_llm_anahuac:${rows[0].id}`);
    assert.deepEqual(all[0].flags, { llm: true });
    assert.equal(all[0].job_queue_id, null, "no named queue: it would stall a poll interval between jobs");
  });

  test("an INSERT of 1,000 rows gets its 1,000 jobs at once, in id order", async () => {
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'prompt ' || g FROM generate_series(1, 1000) g");
    const ids = (await jobs()).map((j) => j.prompt_id);
    assert.deepEqual(ids, Array.from({ length: 1000 }, (_, i) => i + 1));
  });

  test("a bulk INSERT of 10,000 rows gets an enqueue_prompts job in the housekeeping queue, and so do the statements after it; the worker turns them all into jobs in id order", async () => {
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'prompt ' || g FROM generate_series(1, 10000) g");
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'second bulk ' || g FROM generate_series(1, 2000) g");
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('a later single insert')");
    const feed = await db.pool.query(`SELECT j.payload FROM fila_llm_housekeeping._private_jobs j JOIN fila_llm_housekeeping._private_tasks t ON t.id = j.task_id
        WHERE t.identifier = 'enqueue_prompts' ORDER BY j.run_at`);
    assert.equal(feed.rowCount, 3, "one enqueue_prompts job per statement, in the housekeeping queue");
    const ranges = feed.rows.flatMap((r) => r.payload.map((range: { from: number; to: number }) => [range.from, range.to]));
    assert.deepEqual(ranges, [[1, 10000], [10001, 12000], [12001, 12001]], "in the order the statements ran");
    assert.deepEqual(await jobs(), [], "the later single insert waits behind the bulk rows inserted before it");

    // The gate stays closed (paused), so the worker only runs enqueue_prompts.
    await db.pool.query("UPDATE fila_llm_control SET paused = true");
    const llm = await FakeLlm.start();
    const worker = await startInProcessWorker(db, testEnv(llm.origin));
    try {
      const all = await eventually(async () => {
        const rows = await jobs();
        return rows.length === 12_001 ? rows : null;
      }, 30_000, "12,001 jobs");
      assert.deepEqual(all.map((j) => j.prompt_id), Array.from({ length: 12_001 }, (_, i) => i + 1));
      assert.equal(llm.generateRequests.length, 0);
      assert.ok(worker.logs.some((l) => l.includes("enqueued the prompts of a bulk statement, ids 1–10000")));
    } finally {
      await worker.stop();
      await llm.stop();
      await db.pool.query("UPDATE fila_llm_control SET paused = false");
    }
  });

  test("rows inserted as listo or error get no job", async () => {
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt, estatus) VALUES ('a', 'listo'), ('b', 'error'), ('c', 'pendiente')");
    assert.deepEqual((await jobs()).map((j) => j.prompt_id), [3]);
  });

  test("an UPDATE that sets estatus back to pendiente enqueues the row again", async () => {
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt, estatus) VALUES ('a', 'error'), ('b', 'listo'), ('c', 'error')");
    assert.equal((await jobs()).length, 0);
    await db.pool.query("UPDATE fila_llm_anahuac SET estatus = 'pendiente' WHERE estatus = 'error'");
    assert.deepEqual((await jobs()).map((j) => j.prompt_id), [1, 3]);
  });

  test("an UPDATE of a row that is already pendiente does not add a job", async () => {
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('a')");
    await db.pool.query("UPDATE fila_llm_anahuac SET prompt = 'a, corregido', estatus = 'pendiente'");
    assert.equal((await jobs()).length, 1);
  });

  test("enqueueing the same row twice never makes two jobs", async () => {
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('a')");
    await db.pool.query("SELECT fila_llm_enqueue(ARRAY[1, 1])");
    await db.pool.query("UPDATE fila_llm_anahuac SET estatus = 'error'");
    await db.pool.query("UPDATE fila_llm_anahuac SET estatus = 'pendiente'");
    assert.equal((await jobs()).length, 1);
  });
});
