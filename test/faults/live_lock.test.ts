/**
 * A live worker's job is never unlocked by another process, however long its
 * LLM call takes; a dead worker's job is, within seconds. Two worker
 * processes run, and the test process reaps as a third.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { reapDeadPools } from "../../src/sql/jobs";
import { createTestDatabase, insertOne, type TestDatabase } from "../support/db";
import { FakeLlm } from "../support/llm_server";
import { eventually, startChildWorker, testEnv, type ChildWorker } from "../support/worker";

let db: TestDatabase;
let llm: FakeLlm;
const workers: ChildWorker[] = [];

before(async () => {
  db = await createTestDatabase();
  llm = await FakeLlm.start();
});
after(async () => {
  for (const w of workers) await w.stop("SIGKILL");
  await llm.stop();
  await db.drop();
});

async function lockOf(id: number): Promise<string | null> {
  const { rows } = await db.pool.query("SELECT locked_by FROM fila_llm_jobs WHERE prompt_id = $1", [id]);
  return rows[0]?.locked_by ?? null;
}

describe("two workers and the reaper", () => {
  test("during a 12 s call no other process frees its job, while a dead pool's job is freed within seconds", async () => {
    llm.behaviour = (r) => (r.prompt === "llamada larga" ? { delayMs: 12_000 } : {});
    const env = { ...testEnv(llm.origin), DATABASE_URL: db.url };
    workers.push(startChildWorker(env), startChildWorker(env));
    await Promise.all(workers.map((w) => w.waitFor(/worker ready/)));

    const live = await insertOne(db.pool, "llamada larga");
    await eventually(async () => llm.generateRequests.some((r) => r.prompt === "llamada larga"), 10_000, "the long call to start");
    const livePool = await lockOf(live);
    assert.ok(livePool, "the long call's job is locked by its pool");

    // A worker that died holding a job, as kill -9 leaves it: locked by a pool nobody holds.
    const orphan = await insertOne(db.pool, "de un worker muerto");
    await db.pool.query(
      `UPDATE graphile_worker._private_jobs SET locked_by = 'pool-muerto', locked_at = now() - interval '1 minute', attempts = 1
        WHERE key = fila_llm_job_key($1)`,
      [orphan],
    );

    const samples: (string | null)[] = [];
    let reapedByTest: string[] = [];
    // Sampled until 3 s before the 12 s call ends, counted from the call's own start.
    const longCall = llm.generateRequests.find((r) => r.prompt === "llamada larga")!;
    const deadline = longCall.startedAtMs + 9_000;
    while (Date.now() < deadline) {
      // The test process reaps too, as any third process could; it never frees the live pool.
      reapedByTest = reapedByTest.concat(await reapDeadPools(db.pool, "prompts"));
      samples.push(await lockOf(live));
      await new Promise((r) => setTimeout(r, 500));
    }

    assert.ok(samples.length >= 4, `only ${samples.length} samples of the live job's lock`);
    assert.ok(samples.every((s) => s === livePool), `the live job stayed locked by ${livePool}: ${samples.join(", ")}`);
    const freedByWorkers = workers.flatMap((w) => w.output.filter((l) => l.includes("freed the jobs of")));
    assert.ok(freedByWorkers.length + reapedByTest.length >= 1, "the dead pool was freed");
    assert.ok([...reapedByTest, ...freedByWorkers].every((s) => !s.includes(livePool)), "only the dead pool");
    assert.ok(freedByWorkers.every((l) => l.includes("pool-muerto")));

    await eventually(
      async () => (await db.pool.query("SELECT count(*)::int AS n FROM fila_llm_anahuac WHERE estatus = 'listo'")).rows[0].n === 2,
      20_000,
      "both prompts answered",
    );
    assert.equal(llm.generateRequests.filter((r) => r.prompt === "llamada larga").length, 1, "the long call ran once");
    assert.equal(llm.maxInFlight, 1);
  });
});
