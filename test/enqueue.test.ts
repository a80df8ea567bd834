import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { createTestDatabase, type TestDatabase } from "./support/db";

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
});
after(async () => {
  await db.drop();
});
beforeEach(async () => {
  await db.pool.query("DELETE FROM graphile_worker._private_jobs; TRUNCATE fila_llm_anahuac RESTART IDENTITY");
});

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

  test("a bulk INSERT of 10,000 rows makes 10,000 jobs whose order is the id order", async () => {
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'prompt ' || g FROM generate_series(1, 10000) g");
    const all = await jobs();
    assert.equal(all.length, 10_000);
    const ids = all.map((j) => j.prompt_id);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
    assert.equal(new Set(ids).size, 10_000);
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
