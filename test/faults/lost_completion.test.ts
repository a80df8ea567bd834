/**
 * graphile-worker 0.17 does not await the query that completes a job, so a
 * database restart at that instant used to end the worker with an unhandled
 * rejection. Here the completing DELETE of one job fails once with the error a
 * restart gives (admin_shutdown, 57P01), raised by a trigger: the worker must
 * carry on, and free that job, which its own live pool holds, within seconds.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createTestDatabase, type TestDatabase } from "../support/db";
import { FakeLlm } from "../support/llm_server";
import { eventually, startChildWorker, testEnv, type ChildWorker } from "../support/worker";

let db: TestDatabase;
let llm: FakeLlm;
let worker: ChildWorker | null = null;

before(async () => {
  db = await createTestDatabase();
  llm = await FakeLlm.start();
});
after(async () => {
  await worker?.stop("SIGKILL");
  await llm.stop();
  await db.drop();
});

describe("a job's completion lost to a database restart", () => {
  test("the worker keeps running, the job is freed and skipped, and every prompt is answered once", async () => {
    const { rows } = await db.pool.query(
      "INSERT INTO fila_llm_anahuac (prompt) SELECT 'completion ' || g FROM generate_series(1, 3) g RETURNING id",
    );
    const ids: number[] = rows.map((r) => r.id);
    // A sequence, not a table: its nextval survives the failed statement's rollback, so the DELETE fails only once.
    await db.pool.query(`
      CREATE SEQUENCE test_lost_completion;
      CREATE FUNCTION test_lose_completion() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        -- Nested, not AND: SQL may evaluate nextval for every other job too (window_gate's, say).
        IF OLD.payload->>'id' = '${ids[0]}' THEN
          IF nextval('test_lost_completion') = 1 THEN
            RAISE EXCEPTION 'terminating connection due to administrator command (simulated)' USING ERRCODE = 'admin_shutdown';
          END IF;
        END IF;
        RETURN OLD;
      END $$;
      CREATE TRIGGER test_lose_completion BEFORE DELETE ON graphile_worker._private_jobs
        FOR EACH ROW EXECUTE FUNCTION test_lose_completion();`);

    worker = startChildWorker({ ...testEnv(llm.origin), DATABASE_URL: db.url });
    await worker.waitFor(/the database went away while graphile-worker recorded the end of a job/, 20_000);
    await worker.waitFor(/freed 1 job\(s\) whose completion was lost/, 20_000);
    await eventually(async () => {
      const { rows: jobs } = await db.pool.query("SELECT count(*)::int AS n FROM fila_llm_jobs");
      return jobs[0].n === 0;
    }, 20_000, "every job to be gone");

    assert.equal(worker.process.exitCode, null, `the worker is still running; its output:\n${worker.output.join("\n")}`);
    const { rows: done } = await db.pool.query("SELECT id, estatus FROM fila_llm_anahuac ORDER BY id");
    assert.deepEqual(done.map((r) => r.estatus), ["listo", "listo", "listo"]);
    for (const id of ids) {
      const asked = llm.generateRequests.filter((r) => r.prompt === `completion ${ids.indexOf(id) + 1}`).length;
      assert.equal(asked, 1, `prompt ${id} was sent to the LLM once`);
    }
    assert.ok(
      worker.output.some((l) => new RegExp(`prompt ${ids[0]} skipped: it is gone or no longer pendiente`).test(l)),
      "the freed job ran again and skipped the answered row",
    );
    const { rows: seq } = await db.pool.query("SELECT last_value::int AS n FROM test_lost_completion");
    assert.equal(seq[0].n, 2, "the first prompt's job was deleted on its second completion");
  });

  test("two completions lost at once, of jobs locked 6 s and 0.2 s before: both jobs are freed, not only the first one old enough", async () => {
    await db.pool.query(`
      DROP TRIGGER IF EXISTS test_lose_completion ON graphile_worker._private_jobs;
      TRUNCATE fila_llm_anahuac, fila_llm_outcome RESTART IDENTITY;
      DELETE FROM graphile_worker._private_jobs;
      CREATE TABLE test_lose_once (prompt_id TEXT PRIMARY KEY, lost BOOLEAN NOT NULL DEFAULT false);
      CREATE FUNCTION test_lose_two() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        -- The failed DELETE rolls back, so whether it failed already is kept in a sequence per id.
        IF EXISTS (SELECT 1 FROM test_lose_once WHERE prompt_id = OLD.payload->>'id') THEN
          IF nextval('test_lose_' || (OLD.payload->>'id')) = 1 THEN
            RAISE EXCEPTION 'terminating connection due to administrator command (simulated)' USING ERRCODE = 'admin_shutdown';
          END IF;
        END IF;
        RETURN OLD;
      END $$;
      CREATE TRIGGER test_lose_two BEFORE DELETE ON graphile_worker._private_jobs FOR EACH ROW EXECUTE FUNCTION test_lose_two();`);
    await db.pool.query("CREATE SEQUENCE test_lose_1; CREATE SEQUENCE test_lose_2; INSERT INTO test_lose_once (prompt_id) VALUES ('1'), ('2')");
    llm.requests.length = 0;
    llm.behaviour = (r) => ({ delayMs: r.prompt === "larga" ? 6_000 : 200 });
    await worker?.stop("SIGTERM");
    worker = startChildWorker({ ...testEnv(llm.origin, { LLM_CONCURRENCY_PER_SERVER: "2" }), DATABASE_URL: db.url });
    await worker.waitFor(/worker ready/);
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('larga')");
    await eventually(async () => llm.generateRequests.length === 1, 10_000, "the long call to start");
    const longStart = llm.generateRequests[0].startedAtMs;
    // The short one starts 0.2 s before the long one ends: both end, and lose their completion, together.
    await new Promise((r) => setTimeout(r, Math.max(0, longStart + 5_800 - Date.now())));
    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ('corta')");
    await eventually(async () => (await db.pool.query("SELECT count(*)::int AS n FROM fila_llm_jobs")).rows[0].n === 0, 30_000, "both jobs freed and gone");
    const { rows } = await db.pool.query("SELECT estatus FROM fila_llm_anahuac ORDER BY id");
    assert.deepEqual(rows.map((r) => r.estatus), ["listo", "listo"]);
    assert.equal(llm.generateRequests.length, 2, "each prompt sent once");
    assert.equal(worker.output.filter((l) => /the database went away while graphile-worker recorded the end of a job/.test(l)).length >= 2, true, "both completions were lost");
  });
});
