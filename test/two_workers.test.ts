/** Two worker processes on one database: still one LLM request at a time, and failover. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createTestDatabase, type TestDatabase } from "./support/db";
import { FakeLlm } from "./support/llm_server";
import { eventually, startChildWorker, testEnv, type ChildWorker } from "./support/worker";

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

async function allListo(): Promise<boolean> {
  const { rows } = await db.pool.query("SELECT count(*) FILTER (WHERE estatus <> 'listo')::int AS left FROM fila_llm_anahuac");
  return rows[0].left === 0;
}

describe("two worker processes", () => {
  test("never have two LLM requests in flight, and the survivor takes over when the leader stops", async () => {
    llm.behaviour = () => ({ delayMs: 20 });
    const env = { ...testEnv(llm.origin), DATABASE_URL: db.url };
    workers.push(startChildWorker(env), startChildWorker(env));
    await Promise.all(workers.map((w) => w.waitFor(/worker ready/)));

    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'doble ' || g FROM generate_series(1, 40) g");
    await eventually(allListo, 30_000, "40 rows listo");
    assert.equal(llm.maxInFlight, 1);
    assert.equal(llm.generateRequests.length, 40);

    const leaderIndex = workers.findIndex((w) => w.output.some((l) => l.includes("now runs the prompts of")));
    assert.ok(leaderIndex >= 0, "one process says it leads");
    assert.equal(workers.filter((w) => w.output.some((l) => l.includes("now runs the prompts of"))).length, 1);
    assert.equal(await workers[leaderIndex].stop("SIGTERM"), 0);

    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'después ' || g FROM generate_series(1, 5) g");
    await eventually(allListo, 15_000, "the survivor to answer the rest");
    assert.ok(workers[1 - leaderIndex].output.some((l) => l.includes("now runs the prompts of")));
    assert.equal(llm.maxInFlight, 1);
  });
});
