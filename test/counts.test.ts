/**
 * The counts by estatus (fila_llm_counts, migrations/0015) stay exact through
 * every way rows come, change and go: inserts of any size, the worker's
 * writes, the operators' retry and cancel, DELETE, TRUNCATE, concurrent
 * transactions, and compaction racing them. Each check compares the counts
 * with a real count of the table.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { PoolClient } from "pg";
import {
  cancelPrompt,
  compactCounts,
  countByEstatus,
  countPendingUpTo,
  recordFinalFailure,
  recordSuccess,
  retryErrors,
  retryPrompt,
  type Failure,
  type Success,
} from "../src/sql/prompts";
import { insert, insertOne, numbered } from "./support/db";
import { databaseBed } from "./support/bed";
import { seedRuns } from "./support/ops";

const db = databaseBed();

/** The table counted the slow way. */
async function realCounts() {
  const { rows } = await db.pool.query(
    `SELECT count(*) FILTER (WHERE estatus = 'pendiente')::int AS pendiente, count(*) FILTER (WHERE estatus = 'listo')::int AS listo,
            count(*) FILTER (WHERE estatus = 'error')::int AS error
       FROM fila_llm_anahuac`,
  );
  return rows[0];
}

async function assertExact(expected: { pendiente: number; listo: number; error: number }, what: string): Promise<void> {
  assert.deepEqual(await realCounts(), expected, `${what}: the table itself`);
  assert.deepEqual(await countByEstatus(db.pool), expected, `${what}: the counts`);
}

async function deltaRows(): Promise<number> {
  return (await db.pool.query("SELECT count(*)::int AS n FROM fila_llm_counts")).rows[0].n;
}

function success(id: number, seconds: number): Success {
  return {
    id, respuesta: "hecho", tokensIn: 3, tokensOut: 5, seconds, failures: 0, provider: "ollama", model: "test-model",
    server: "http://127.0.0.1:11434/", serverModel: null, serverTokensIn: null, serverTokensOut: null, finishReason: "stop",
    timings: { loadSeconds: null, promptEvalSeconds: null, evalSeconds: null }, startedAt: new Date(),
  };
}

function failure(id: number): Failure {
  return {
    id, message: "HTTP 400: bad", failures: 1, seconds: 0.5, provider: "ollama", model: "test-model", server: "http://127.0.0.1:11434/", httpStatus: 400,
    finishReason: "rejected", partialAnswer: null, startedAt: new Date(),
  };
}

/** A client inside an open transaction, with a short lock_timeout so that waiting on another session fails the test instead of hanging it. */
async function openTransaction(): Promise<PoolClient> {
  const client = await db.pool.connect();
  await client.query("BEGIN");
  await client.query("SET LOCAL lock_timeout = '2s'");
  return client;
}

describe("counts by estatus", () => {
  test("inserts of one row, several rows and more than 1,000 rows are counted, and still enqueued", async () => {
    await assertExact({ pendiente: 0, listo: 0, error: 0 }, "empty");
    await insertOne(db.pool, "una");
    await assertExact({ pendiente: 1, listo: 0, error: 0 }, "one row");
    await insert(db.pool, ...numbered("varias", 5));
    await assertExact({ pendiente: 6, listo: 0, error: 0 }, "five rows");
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'bulk ' || g FROM generate_series(1, 1500) g");
    await assertExact({ pendiente: 1506, listo: 0, error: 0 }, "1,500 rows");
    // Rows inserted already finished (the old system's, or seeded) count under their estatus.
    await seedRuns(db.pool, [
      { estatus: "listo", finishedAt: "2026-11-27T08:00:00Z", seconds: 3 },
      { estatus: "error", finishedAt: "2026-11-27T08:01:00Z", seconds: 2, message: "HTTP 500" },
      { estatus: "error" },
    ]);
    await assertExact({ pendiente: 1506, listo: 1, error: 2 }, "mixed");
    const { rows } = await db.pool.query(
      `SELECT (SELECT count(*)::int FROM fila_llm_jobs) AS jobs,
              (SELECT count(*)::int FROM fila_llm_housekeeping.jobs WHERE task_identifier = 'enqueue_prompts') AS bulk`,
    );
    assert.deepEqual(rows[0], { jobs: 6, bulk: 1 }, "the small inserts' jobs at once, the bulk one's by enqueue_prompts");
  });

  test("the worker's answers and failures, the operators' cancel and retry, and a retry by plain SQL move rows between counts", async () => {
    const ids = await insert(db.pool, ...numbered("p", 6));
    assert.equal(await recordSuccess(db.pool, success(ids[0], 1.25)), true);
    assert.equal(await recordSuccess(db.pool, success(ids[1], 2)), true);
    assert.equal(await recordFinalFailure(db.pool, failure(ids[2])), true);
    assert.equal(await recordSuccess(db.pool, success(ids[2], 1)), false, "a row no longer pendiente is not written");
    await assertExact({ pendiente: 3, listo: 2, error: 1 }, "after the worker");
    assert.equal(await cancelPrompt(db.pool, ids[3]), true);
    await assertExact({ pendiente: 2, listo: 2, error: 2 }, "after a cancel");
    assert.equal(await retryPrompt(db.pool, ids[2]), true);
    await assertExact({ pendiente: 3, listo: 2, error: 1 }, "after fila_llm_retry");
    await recordFinalFailure(db.pool, failure(ids[4]));
    assert.equal(await retryErrors(db.pool, null), 2);
    await assertExact({ pendiente: 4, listo: 2, error: 0 }, "after fila_llm_retry_errors");
    await db.pool.query("UPDATE fila_llm_anahuac SET estatus = 'pendiente' WHERE id = $1", [ids[0]]);
    await assertExact({ pendiente: 5, listo: 1, error: 0 }, "after UPDATE … SET estatus = 'pendiente'");
    const { rows } = await db.pool.query("SELECT prompt_id FROM fila_llm_jobs WHERE prompt_id = ANY($1) ORDER BY prompt_id", [[ids[0], ids[3], ids[4]]]);
    assert.deepEqual(rows.map((r) => r.prompt_id), [ids[0], ids[3], ids[4]], "every retried row is enqueued again (the cancelled one by retry_errors)");
    // Statements that change no estatus append nothing.
    const before = await deltaRows();
    await db.pool.query("UPDATE fila_llm_anahuac SET respuesta = 'corregida' WHERE id = $1", [ids[1]]);
    await db.pool.query("UPDATE fila_llm_anahuac SET estatus = 'listo' WHERE false");
    assert.equal(await deltaRows(), before);
  });

  test("DELETE, an UPDATE that changes ids, and TRUNCATE keep the counts exact", async () => {
    const ids = await insert(db.pool, ...numbered("p", 5));
    await recordSuccess(db.pool, success(ids[0], 1));
    await recordFinalFailure(db.pool, failure(ids[1]));
    await db.pool.query("DELETE FROM fila_llm_anahuac WHERE id = ANY($1)", [[ids[0], ids[2]]]);
    await assertExact({ pendiente: 2, listo: 0, error: 1 }, "after DELETE");
    await db.pool.query("UPDATE fila_llm_anahuac SET id = id + 1000, estatus = 'listo' WHERE id = $1", [ids[3]]);
    await assertExact({ pendiente: 1, listo: 1, error: 1 }, "after an UPDATE of id and estatus");
    await db.pool.query("TRUNCATE fila_llm_anahuac");
    await assertExact({ pendiente: 0, listo: 0, error: 0 }, "after TRUNCATE");
    await insertOne(db.pool, "después");
    await assertExact({ pendiente: 1, listo: 0, error: 0 }, "after TRUNCATE and an INSERT");
  });

  test("two inserting transactions do not wait for each other: the one left open counts once it commits", async () => {
    await insert(db.pool, "antes");
    const open = await openTransaction();
    try {
      await open.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'abierta ' || g FROM generate_series(1, 3) g");
      const other = await openTransaction();
      try {
        await other.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'otra ' || g FROM generate_series(1, 1200) g");
        await other.query("COMMIT");
      } finally {
        other.release();
      }
      await assertExact({ pendiente: 1201, listo: 0, error: 0 }, "the open transaction's rows are not yet visible");
      assert.deepEqual(await countByEstatus(open), { pendiente: 1204, listo: 0, error: 0 }, "the open transaction sees its own");
      await open.query("COMMIT");
    } finally {
      open.release();
    }
    await assertExact({ pendiente: 1204, listo: 0, error: 0 }, "both committed");
  });

  test("compaction folds the counts into one row, and racing an open insert or an insert during its own transaction loses nothing", async () => {
    await insert(db.pool, "a");
    await insert(db.pool, "b", "c");
    assert.equal(await deltaRows(), 2, "one row per statement");
    assert.equal(await compactCounts(db.pool), 2);
    assert.equal(await deltaRows(), 1);
    assert.equal(await compactCounts(db.pool), 0, "nothing to fold");
    await assertExact({ pendiente: 3, listo: 0, error: 0 }, "compacted");

    // An insert still open while compaction runs: its delta is not folded, and counts when it commits.
    const open = await openTransaction();
    try {
      await open.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('abierta')");
      await insert(db.pool, "d");
      assert.equal(await compactCounts(db.pool), 2, "folds the committed rows, without waiting for the open insert");
      await open.query("COMMIT");
    } finally {
      open.release();
    }
    await assertExact({ pendiente: 5, listo: 0, error: 0 }, "the open insert committed after the compaction");

    // Compaction in a transaction still open while another session inserts and commits.
    await insert(db.pool, "e");
    const compacting = await openTransaction();
    try {
      // The folded row, the insert that was open, and this one.
      assert.equal((await compacting.query("SELECT fila_llm_compact_counts() AS n")).rows[0].n, 3);
      await insert(db.pool, "f");
      await db.pool.query("UPDATE fila_llm_anahuac SET estatus = 'error' WHERE prompt = 'a'");
      await compacting.query("COMMIT");
    } finally {
      compacting.release();
    }
    await assertExact({ pendiente: 6, listo: 0, error: 1 }, "inserts and updates during a compaction");
    await compactCounts(db.pool);
    assert.equal(await deltaRows(), 1);
    await assertExact({ pendiente: 6, listo: 0, error: 1 }, "compacted again");
  });

  test("fila_llm_recount() repairs the counts after the triggers were disabled, and refuses a snapshot older than its lock", async () => {
    await insert(db.pool, "a", "b");
    await db.pool.query("ALTER TABLE fila_llm_anahuac DISABLE TRIGGER USER");
    try {
      await db.pool.query("INSERT INTO fila_llm_anahuac (prompt, estatus) SELECT 'sin disparador ' || g, 'listo' FROM generate_series(1, 4) g");
    } finally {
      await db.pool.query("ALTER TABLE fila_llm_anahuac ENABLE TRIGGER USER");
    }
    assert.deepEqual(await countByEstatus(db.pool), { pendiente: 2, listo: 0, error: 0 }, "the counts missed the rows");
    const { rows } = await db.pool.query("SELECT * FROM fila_llm_recount()");
    assert.deepEqual(rows[0], { pendiente: "2", listo: "4", error: "0" });
    await assertExact({ pendiente: 2, listo: 4, error: 0 }, "recounted");
    assert.equal(await deltaRows(), 1);

    const client = await db.pool.connect();
    try {
      await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
      await assert.rejects(client.query("SELECT fila_llm_recount()"), /must run in a READ COMMITTED transaction/);
    } finally {
      await client.query("ROLLBACK");
      client.release();
    }
  });

  test("countPendingUpTo counts the oldest pending rows, no further than asked", async () => {
    const ids = await insert(db.pool, ...numbered("p", 4));
    await recordSuccess(db.pool, success(ids[0], 1));
    assert.equal(await countPendingUpTo(db.pool, 3), 3);
    assert.equal(await countPendingUpTo(db.pool, 10), 3);
    await recordSuccess(db.pool, success(ids[1], 1));
    await recordSuccess(db.pool, success(ids[2], 1));
    assert.equal(await countPendingUpTo(db.pool, 3), 1);
  });
});
