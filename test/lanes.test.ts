/**
 * Several LLM servers, one queue: a lane per server, each still one prompt at
 * a time (or LLM_CONCURRENCY_PER_SERVER), with failover between them. Real
 * worker processes (`node dist/src/cli.js start`), real PostgreSQL, and one
 * test LLM server per lane.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import { createTestDatabase, insert, numbered, reset, type TestDatabase } from "./support/db";
import { FakeLlm, type RecordedRequest } from "./support/llm_server";
import { eventually, startChildWorker, testEnv, type ChildWorker } from "./support/worker";

let db: TestDatabase;
const servers: FakeLlm[] = [];
let workers: ChildWorker[] = [];

before(async () => {
  db = await createTestDatabase();
  for (let i = 0; i < 3; i++) servers.push(await FakeLlm.start());
});
after(async () => {
  for (const s of servers) await s.stop();
  await db.drop();
});
beforeEach(async () => {
  await reset(db.pool);
  await db.pool.query("DELETE FROM fila_llm_servers");
  for (const s of servers) {
    s.reset();
    // A stopped server (the kill test) listens again on its port.
    await s.restart().catch(() => {});
  }
});
afterEach(async () => {
  for (const w of workers) await w.stop("SIGKILL");
  workers = [];
});

/** Worker processes on these servers, each LLM_BASE_URL a comma-separated list. */
async function startWorkers(count: number, lanes: FakeLlm[], overrides: Record<string, string> = {}): Promise<ChildWorker[]> {
  const env = { ...testEnv(lanes.map((s) => s.origin).join(",")), DATABASE_URL: db.url, ...overrides };
  const started = Array.from({ length: count }, () => startChildWorker(env));
  workers.push(...started);
  await Promise.all(started.map((w) => w.waitFor(/worker ready/)));
  return started;
}

async function estatusCounts(): Promise<Record<string, number>> {
  const { rows } = await db.pool.query("SELECT estatus, count(*)::int AS n FROM fila_llm_anahuac GROUP BY estatus");
  return Object.fromEntries(rows.map((r) => [r.estatus, r.n]));
}

async function allListo(n: number): Promise<boolean> {
  return (await estatusCounts()).listo === n;
}

/** The server each prompt's row records, by prompt text. */
async function answeredBy(): Promise<Map<string, string>> {
  const { rows } = await db.pool.query("SELECT a.prompt, o.server FROM fila_llm_anahuac a JOIN fila_llm_outcome o ON o.prompt_id = a.id");
  return new Map(rows.map((r) => [r.prompt, r.server]));
}

/** Every prompt request of these servers, in order of arrival. */
function arrivals(lanes: FakeLlm[]): RecordedRequest[] {
  return lanes.flatMap((s) => s.generateRequests).sort((a, b) => a.startedAtHr - b.startedAtHr);
}

describe("lanes", () => {
  for (const laneCount of [2, 3]) {
    test(`${laneCount} lanes and two worker processes: every server busy, never two requests on one, each row records its server`, async () => {
      const lanes = servers.slice(0, laneCount);
      for (const s of lanes) s.behaviour = () => ({ delayMs: 100 });
      await startWorkers(2, lanes);
      const prompts = numbered("carril", 15 * laneCount);
      await insert(db.pool, ...prompts);
      await eventually(() => allListo(prompts.length), 30_000, "every prompt listo");
      for (const s of lanes) {
        assert.equal(s.maxInFlight, 1, `${s.origin} never had two requests in flight`);
        assert.ok(s.generateRequests.length >= 5, `${s.origin} answered ${s.generateRequests.length} prompts`);
      }
      assert.equal(lanes.reduce((n, s) => n + s.generateRequests.length, 0), prompts.length, "each prompt sent once");
      const by = await answeredBy();
      for (const s of lanes) {
        for (const r of s.generateRequests) assert.equal(by.get(r.prompt!), `${s.origin}/`, `prompt "${r.prompt}" records the server that answered it`);
      }
    });
  }

  test("prompts start in id order across lanes: none starts before an older one, beyond the requests already in flight", async () => {
    const lanes = servers.slice(0, 3);
    for (const s of lanes) s.behaviour = () => ({ delayMs: 60 });
    await startWorkers(2, lanes);
    const prompts = numbered("orden", 45);
    const ids = await insert(db.pool, ...prompts);
    await eventually(() => allListo(prompts.length), 30_000, "every prompt listo");
    const order = arrivals(lanes).map((r) => ids[prompts.indexOf(r.prompt!)]);
    assert.equal(order.length, prompts.length);
    // Three lanes fetch at once, so three requests may reach their servers in any order; no more.
    order.forEach((id, position) => assert.ok(Math.abs(ids.indexOf(id) - position) < lanes.length, `prompt ${id} started at position ${position}`));
  });

  test("a lane whose server is killed mid-request: no row becomes error, its prompt is answered by another lane within 5 s, and the lane rejoins once the server is back", async () => {
    const [a, b] = servers;
    a.behaviour = () => ({ delayMs: 200 });
    b.behaviour = () => ({ delayMs: 3_000 });
    await startWorkers(2, [a, b], { LLM_OUTAGE_MAX_BACKOFF_SECONDS: "5" });
    const prompts = numbered("caída", 30);
    await insert(db.pool, ...prompts);
    await eventually(async () => b.inFlight === 1, 10_000, "a request in flight on the second server");
    const lost = b.generateRequests[b.generateRequests.length - 1].prompt!;
    const killedAtMs = Date.now();
    await b.stop();
    await eventually(async () => a.generateRequests.some((r) => r.prompt === lost), 5_000, `prompt "${lost}" answered by the other lane`);
    assert.ok(a.generateRequests.find((r) => r.prompt === lost)!.startedAtMs - killedAtMs < 5_000);

    b.behaviour = () => ({ delayMs: 200 });
    const restartedAtMs = Date.now();
    await b.restart();
    await eventually(async () => b.generateRequests.some((r) => r.startedAtMs > restartedAtMs), 60_000, "the lane to rejoin");
    await eventually(() => allListo(prompts.length), 30_000, "every prompt listo");
    assert.equal((await estatusCounts()).error, undefined, "no row became error");
    assert.equal(a.maxInFlight, 1);
    const { rows } = await db.pool.query("SELECT attempts FROM fila_llm_outcome o JOIN fila_llm_anahuac a ON a.id = o.prompt_id WHERE a.prompt = $1", [lost]);
    assert.equal(rows[0].attempts, 0, "the outage used no attempt of the interrupted prompt");
  });

  test("a lane that answers 404 for the model is taken out as misconfigured, while the others answer every prompt", async () => {
    const [a, b, c] = servers;
    for (const s of [a, c]) s.behaviour = () => ({ delayMs: 50 });
    b.models = new Set(["another-model"]);
    const [worker] = await startWorkers(1, [a, b, c]);
    const prompts = numbered("mal configurado", 30);
    await insert(db.pool, ...prompts);
    await eventually(() => allListo(prompts.length), 30_000, "every prompt listo");
    assert.equal((await estatusCounts()).error, undefined);
    assert.ok(b.generateRequests.length >= 1 && b.generateRequests.length <= 3, `the misconfigured server was tried ${b.generateRequests.length} times, then left alone`);
    const by = await answeredBy();
    assert.ok([...by.values()].every((server) => server !== `${b.origin}/`), "no row records the misconfigured server");
    const { rows } = await db.pool.query("SELECT state, message FROM fila_llm_servers WHERE server = $1", [`${b.origin}/`]);
    assert.equal(rows[0].state, "misconfigured");
    assert.match(rows[0].message, /404/);
    await worker.waitFor(new RegExp(`configuration fault.*${b.origin.replace(/[.]/g, "\\.")}`));
  });

  test("LLM_CONCURRENCY_PER_SERVER=4 keeps exactly 4 requests in flight on one server, with two worker processes", async () => {
    const [a] = servers;
    a.behaviour = () => ({ delayMs: 500 });
    await startWorkers(2, [a], { LLM_CONCURRENCY_PER_SERVER: "4" });
    const prompts = numbered("lote", 24);
    await insert(db.pool, ...prompts);
    let sawFour = false;
    await eventually(
      async () => {
        if (a.inFlight === 4) sawFour = true;
        return allListo(prompts.length);
      },
      30_000,
      "every prompt listo",
    );
    assert.equal(a.maxInFlight, 4, "never more than 4");
    assert.ok(sawFour, "4 at once");
  });

  test("kill -9 of a worker: another process takes its lanes, and its interrupted prompts run again, within 15 s", async () => {
    const [a, b] = servers;
    for (const s of [a, b]) s.behaviour = (req) => ({ delayMs: req.prompt?.startsWith("larga") ? 4_000 : 50 });
    const pair = await startWorkers(2, [a, b]);
    await insert(db.pool, "larga 1", "larga 2", ...numbered("corta", 10));
    await eventually(async () => a.inFlight + b.inFlight === 2, 10_000, "both long calls in flight");
    const victim = pair.find((w) => w.output.some((l) => l.includes("now runs the prompts of")))!;
    const survivor = pair.find((w) => w !== victim)!;
    const killedAtMs = Date.now();
    victim.process.kill("SIGKILL");
    await victim.exited;
    const requests = () => [a, b].flatMap((s) => s.generateRequests);
    const cut = await eventually(async () => {
      const left = requests().filter((r) => r.clientLeft).map((r) => r.prompt!);
      return left.length > 0 ? left : null;
    }, 5_000, "the killed worker's calls to be cut");
    await eventually(
      async () => cut.every((prompt) => requests().some((r) => r.prompt === prompt && r.startedAtMs > killedAtMs)),
      15_000,
      `the interrupted prompts (${cut.join(", ")}) to run again`,
    );
    assert.ok(survivor.output.filter((l) => l.includes("now runs the prompts of")).length === 2, "the survivor runs both lanes");
    await eventually(() => allListo(12), 30_000, "every prompt listo");
    assert.equal(a.maxInFlight, 1);
    assert.equal(b.maxInFlight, 1);
  });
});
