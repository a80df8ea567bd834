/**
 * PostgreSQL restarting in the middle of a drain: the worker process waits it
 * out, reconnects and carries on, and every prompt ends listo, answered once.
 * The server is one of the test's own (never the machine's 127.0.0.1:5432).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { migrate } from "../../src/migrate";
import { defaultAnswer, FakeLlm } from "../support/llm_server";
import { eventually, startChildWorker, testEnv, type ChildWorker } from "../support/worker";
import { answersWrittenTwice, recordAnswerWrites, RestartableDatabase, sleep } from "./support";

let db: RestartableDatabase;
let llm: FakeLlm;
let worker: ChildWorker | null = null;

before(async () => {
  db = await RestartableDatabase.start();
  await migrate(db.pool!);
  await recordAnswerWrites(db.pool!);
  llm = await FakeLlm.start();
});
after(async () => {
  await worker?.stop("SIGKILL");
  await llm.stop();
  await db.destroy();
});

async function counts(): Promise<{ listo: number; pendiente: number; error: number }> {
  const { rows } = await db.pool!.query(
    `SELECT count(*) FILTER (WHERE estatus = 'listo')::int AS listo, count(*) FILTER (WHERE estatus = 'pendiente')::int AS pendiente,
            count(*) FILTER (WHERE estatus = 'error')::int AS error FROM fila_llm_anahuac`,
  );
  return rows[0];
}

describe("a database restart mid-drain", () => {
  test("the same worker process reconnects and carries on; all 150 rows end listo, each answered once", async () => {
    llm.behaviour = () => ({ delayMs: 100 });
    await db.pool!.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'reinicio ' || lpad(g::text, 3, '0') FROM generate_series(1, 150) g");
    worker = startChildWorker({ ...testEnv(llm.origin), DATABASE_URL: db.url });
    await worker.waitFor(/worker ready/);
    const pid = worker.process.pid;
    const t0 = Date.now();
    const at = (ms: number) => `+${((ms - t0) / 1000).toFixed(1)} s`;
    const timeline: string[] = [];

    // Two restarts: a quick one, and one that keeps the server away for 10 s.
    for (const downMs of [3_000, 10_000]) {
      const before = (await counts()).listo;
      await eventually(async () => (await counts()).listo >= before + 30, 30_000, "30 more rows answered");
      const inFlight = llm.inFlight > 0;
      const stoppedAt = Date.now();
      await db.stopServer();
      timeline.push(`${at(stoppedAt)} PostgreSQL stopped (fast shutdown${inFlight ? ", an LLM call in flight" : ""})`);
      await sleep(downMs);
      await db.startServer();
      const startedAt = Date.now();
      timeline.push(`${at(startedAt)} PostgreSQL started again after ${downMs / 1000} s down`);
      const next = await eventually(async () => llm.generateRequests.find((r) => r.startedAtMs > startedAt && r.endedAtMs !== null), 60_000, "a request after the restart");
      timeline.push(`${at(next.startedAtMs)} first LLM request after the restart (${((next.startedAtMs - startedAt) / 1000).toFixed(1)} s after it)`);
    }

    await eventually(async () => (await counts()).pendiente === 0, 120_000, "every row to leave pendiente");
    const finishedAt = Date.now();
    timeline.push(`${at(finishedAt)} all rows done`);

    for (const line of worker.output) {
      const match = /^(\S+Z) (WARN |INFO |ERROR)\s*\[(\S+)\] (.*)$/.exec(line);
      if (!match || Date.parse(match[1]) < t0) continue;
      if (/prompt \d+ listo/.test(match[4])) continue;
      timeline.push(`${at(Date.parse(match[1]))} worker ${match[2].trim()} [${match[3]}] ${match[4].slice(0, 160)}`);
    }
    timeline.sort((a, b) => parseFloat(a.slice(1)) - parseFloat(b.slice(1)));
    console.log(`database restart timeline:\n  ${timeline.join("\n  ")}`);

    assert.equal(worker.process.exitCode, null, "the worker process is still running");
    assert.equal(worker.process.pid, pid);
    assert.deepEqual(await counts(), { listo: 150, pendiente: 0, error: 0 });
    const { rows } = await db.pool!.query("SELECT id, prompt, respuesta FROM fila_llm_anahuac ORDER BY id");
    for (const row of rows) assert.equal(row.respuesta, defaultAnswer(row.prompt), `row ${row.id} has its own answer`);
    assert.deepEqual(await answersWrittenTwice(db.pool!), []);
    assert.equal(llm.maxInFlight, 1);
    const { rows: jobs } = await db.pool!.query("SELECT count(*)::int AS n FROM fila_llm_jobs");
    assert.equal(jobs[0].n, 0, "no job left behind");
  });

  test("PostgreSQL crashes (immediate shutdown) three times mid-drain: commits not yet on disk are lost, yet every row ends listo once, and no job is left locked", async () => {
    await worker?.stop("SIGTERM");
    await db.pool!.query("TRUNCATE fila_llm_anahuac, fila_llm_outcome RESTART IDENTITY; DELETE FROM test_answer_writes; DELETE FROM graphile_worker._private_jobs");
    llm.requests.length = 0;
    llm.behaviour = () => ({ delayMs: 20 });
    await db.pool!.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'caída ' || lpad(g::text, 3, '0') FROM generate_series(1, 150) g");
    worker = startChildWorker({ ...testEnv(llm.origin), DATABASE_URL: db.url });
    await worker.waitFor(/worker ready/);
    for (let crash = 0; crash < 3; crash++) {
      const before = (await counts()).listo;
      await eventually(async () => (await counts()).listo >= before + 25, 30_000, "25 more rows answered");
      await db.stopServer({ crash: true });
      await sleep(1_000);
      await db.startServer();
    }
    // A completion lost in a crash leaves a job locked by this live worker; it is freed once the session is back.
    await eventually(async () => (await counts()).pendiente === 0, 120_000, "every row to leave pendiente");
    assert.deepEqual(await counts(), { listo: 150, pendiente: 0, error: 0 });
    assert.deepEqual(await answersWrittenTwice(db.pool!), [], "no answer written twice");
    await eventually(async () => (await db.pool!.query("SELECT count(*)::int AS n FROM fila_llm_jobs")).rows[0].n === 0, 30_000, "no job left behind");
    assert.equal(worker.process.exitCode, null, "the same worker process carried on");
  });
});
