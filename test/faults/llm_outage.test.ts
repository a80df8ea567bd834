/**
 * The LLM server away inside the window: no prompt is marked error for it,
 * the worker backs off up to LLM_OUTAGE_MAX_BACKOFF_SECONDS, logs one line
 * per change of state, and resumes within that cap once the server is back.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { createTestDatabase, insert, numbered, type TestDatabase } from "../support/db";
import { FakeLlm } from "../support/llm_server";
import { eventually, startChildWorker, testEnv, type ChildWorker } from "../support/worker";
import { sleep } from "./support";

let db: TestDatabase;
let llm: FakeLlm;
let worker: ChildWorker | null = null;

before(async () => {
  db = await createTestDatabase();
  llm = await FakeLlm.start();
});
afterEach(async () => {
  await worker?.stop("SIGKILL");
  worker = null;
});
after(async () => {
  await llm.stop();
  await db.drop();
});

async function statuses(ids: number[]): Promise<Record<string, number>> {
  const { rows } = await db.pool.query("SELECT estatus, count(*)::int AS n FROM fila_llm_anahuac WHERE id = ANY($1) GROUP BY 1", [ids]);
  return Object.fromEntries(rows.map((r) => [r.estatus, r.n]));
}

/** The worker's own lines (not graphile-worker's), at info level and above. */
const operatorLines = (lines: string[]) => lines.filter((l) => / (INFO|WARN|ERROR) +\[/.test(l) && !l.includes("[graphile-worker]"));

describe("the LLM server down inside the window", () => {
  test("down for 2 minutes: no row becomes error, the backoff grows to the 60 s cap, work resumes within 60 s of its return, one log line per change", async () => {
    worker = startChildWorker({
      ...testEnv(llm.origin, { LLM_MAX_ATTEMPTS: "2", LLM_RETRY_DELAY_SECONDS: "1" }),
      DATABASE_URL: db.url,
      // The per-attempt backoff is a debug line; the test reads it to see the backoff grow.
      LOG_LEVEL: "debug",
    });
    await worker.waitFor(/worker ready/);
    // Its one-time start-up lines are out of the way before the outage begins.
    await worker.waitFor(/now runs the prompts of/);
    await llm.stop();
    const downAt = Date.now();
    // Lines are told apart by position, not by their millisecond timestamps,
    // which can equal downAt for a line printed just before the stop.
    const linesBeforeDown = worker.output.length;
    const ids = await insert(db.pool, ...numbered("durante la caída", 10));

    while (Date.now() - downAt < 120_000) {
      await sleep(5_000);
      assert.equal((await statuses(ids)).error ?? 0, 0, "no row becomes error while the LLM is down");
    }
    await llm.restart();
    const backAt = Date.now();
    const linesBeforeBack = worker.output.length;
    await eventually(async () => (await statuses(ids)).listo === ids.length, 90_000, "every row answered after the LLM returned");
    const resumedAfterMs = llm.generateRequests[0].startedAtMs - backAt;

    const backoffs = worker.output
      .map((l) => /LLM unavailable: no prompt starts for (\d+(?:\.\d+)?) s/.exec(l))
      .filter((m) => m !== null)
      .map((m) => Number(m![1]));
    console.log(`LLM down 120 s: backoffs ${backoffs.join(", ")} s; first request ${(resumedAfterMs / 1000).toFixed(1)} s after it returned`);

    assert.ok(backoffs.length >= 6, `${backoffs.length} attempts while down`);
    for (let i = 1; i < backoffs.length; i++) assert.ok(backoffs[i] >= backoffs[i - 1], "the backoff never shrinks");
    assert.equal(Math.max(...backoffs), 60, "it grows to LLM_OUTAGE_MAX_BACKOFF_SECONDS");
    assert.ok(resumedAfterMs <= 61_000, `resumed ${resumedAfterMs} ms after the LLM returned`);
    const { rows } = await db.pool.query("SELECT coalesce(max(attempts), 0)::int AS n FROM fila_llm_outcome WHERE prompt_id = ANY($1)", [ids]);
    assert.equal(rows[0].n, 0, "the outage cost no prompt an attempt");

    const whileDown = operatorLines(worker.output.slice(linesBeforeDown, linesBeforeBack));
    console.log(`worker lines at info and above while the LLM was down:\n  ${whileDown.join("\n  ")}`);
    assert.ok(whileDown.length <= 3, "a handful of lines in 2 minutes, not one per attempt");
    // The model's load before the first prompt is tried once, and said once.
    assert.ok(whileDown.every((l) => /LLM unavailable|queue (opened|closed)|loading model test-model/.test(l)), whileDown.join("\n"));
    const lines = operatorLines(worker.output).filter((l) => /\[llm\] LLM (unavailable|is answering)/.test(l));
    assert.equal(lines.length, 2, `one line down, one line back:\n${lines.join("\n")}`);
    assert.match(lines[0], /WARN +\[llm\] LLM unavailable; prompts wait \(none is marked error\)/);
    assert.match(lines[1], /INFO +\[llm\] LLM is answering again after \d+ s; prompts resume/);
  });

  test("HTTP 503 for every prompt while the server's health probe answers is an outage too: no row becomes error", async () => {
    let failing = true;
    llm.behaviour = () => (failing ? { status: 503 } : {});
    worker = startChildWorker({
      ...testEnv(llm.origin, { LLM_MAX_ATTEMPTS: "2", LLM_RETRY_DELAY_SECONDS: "0.5", LLM_OUTAGE_MAX_BACKOFF_SECONDS: "4" }),
      DATABASE_URL: db.url,
    });
    await worker.waitFor(/worker ready/);
    const ids = await insert(db.pool, ...numbered("con 503", 8));
    const failingSince = Date.now();
    while (Date.now() - failingSince < 25_000) {
      await sleep(2_500);
      assert.equal((await statuses(ids)).error ?? 0, 0, "no row becomes error while every prompt gets 503");
    }
    failing = false;
    await eventually(async () => (await statuses(ids)).listo === ids.length, 30_000, "every row answered");
    const asked = llm.generateRequests.filter((r) => r.prompt?.startsWith("con 503 ")).length;
    assert.ok(asked > ids.length + 3, `503s were retried while they lasted: ${asked} requests for ${ids.length} prompts`);
    const lines = operatorLines(worker.output).filter((l) => l.includes("[llm]"));
    assert.equal(lines.filter((l) => l.includes("LLM unavailable")).length, 1, lines.join("\n"));
    assert.equal(lines.filter((l) => l.includes("LLM is answering again")).length, 1, lines.join("\n"));
  });
});
