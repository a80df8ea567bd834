/**
 * SIGTERM/SIGINT (pm2 stop, restart, reload) during a long LLM call: the call
 * finishes within SHUTDOWN_GRACE_SECONDS; past it, it is cancelled and its
 * prompt stays pendiente, keeps its place and is not charged an attempt. The
 * process exits 0 either way.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { createTestDatabase, insertOne, type TestDatabase } from "../support/db";
import { defaultAnswer, FakeLlm } from "../support/llm_server";
import { eventually, startChildWorker, testEnv, type ChildWorker } from "../support/worker";
import { Pm2 } from "./support";

let db: TestDatabase;
let llm: FakeLlm;
const workers: ChildWorker[] = [];

before(async () => {
  db = await createTestDatabase();
  llm = await FakeLlm.start();
});
afterEach(async () => {
  for (const w of workers.splice(0)) await w.stop("SIGKILL");
  llm.behaviour = () => ({});
});
after(async () => {
  await llm.stop();
  await db.drop();
});

function start(overrides: Record<string, string> = {}): ChildWorker {
  const worker = startChildWorker({ ...testEnv(llm.origin, overrides), DATABASE_URL: db.url });
  workers.push(worker);
  return worker;
}

async function row(id: number) {
  const { rows } = await db.pool.query(
    `SELECT a.estatus, a.respuesta, o.attempts, o.estatus AS outcome
       FROM fila_llm_anahuac a LEFT JOIN fila_llm_outcome o ON o.prompt_id = a.id WHERE a.id = $1`,
    [id],
  );
  return rows[0];
}

async function job(id: number) {
  const { rows } = await db.pool.query("SELECT failures, run_at, locked_by FROM fila_llm_jobs WHERE prompt_id = $1", [id]);
  return rows[0] ?? null;
}

const requestsFor = (prompt: string) => llm.generateRequests.filter((r) => r.prompt === prompt);

describe("SIGTERM during a 10 s LLM request", () => {
  test("within the grace the request finishes, its row is listo, nothing new starts, and the process exits 0", async () => {
    llm.behaviour = (r) => (r.prompt === "diez segundos" ? { delayMs: 10_000 } : {});
    const worker = start({ SHUTDOWN_GRACE_SECONDS: "30" });
    await worker.waitFor(/worker ready/);
    const id = await insertOne(db.pool, "diez segundos");
    await eventually(async () => requestsFor("diez segundos").length === 1, 10_000, "the request to start");
    const next = await insertOne(db.pool, "espera su turno");
    await new Promise((r) => setTimeout(r, 1_000));

    const signalledAt = Date.now();
    const code = await worker.stop("SIGTERM");
    const seconds = (Date.now() - signalledAt) / 1000;

    assert.equal(code, 0);
    assert.ok(seconds >= 8 && seconds < 15, `stopped after ${seconds} s: when the request ended, not before`);
    assert.deepEqual(await row(id), { estatus: "listo", respuesta: defaultAnswer("diez segundos"), attempts: 0, outcome: "listo" });
    assert.equal((await row(next)).estatus, "pendiente");
    assert.equal(requestsFor("espera su turno").length, 0, "no prompt starts once the signal has arrived");
    assert.ok(worker.output.some((l) => l.includes("SIGTERM: no new prompt starts; the one in flight has 30 s to finish")));
    assert.ok(worker.output.some((l) => l.includes("[fila-llm] stopped")));

    // Clean up for the next test: let a worker answer what is left.
    const again = start();
    await eventually(async () => (await row(next)).estatus === "listo", 20_000, "the waiting prompt");
    assert.equal(await again.stop("SIGTERM"), 0);
  });

  test("past a 2 s grace the request is cancelled: the row stays pendiente, keeps its place, is not charged, and runs again after the restart", async () => {
    llm.behaviour = (r) => (r.prompt === "más largo que la gracia" ? { delayMs: 10_000 } : {});
    const worker = start({ SHUTDOWN_GRACE_SECONDS: "2" });
    await worker.waitFor(/worker ready/);
    const id = await insertOne(db.pool, "más largo que la gracia");
    const queued = await eventually(async () => job(id), 5_000, "its job");
    await eventually(async () => requestsFor("más largo que la gracia").length === 1, 10_000, "the request to start");

    const signalledAt = Date.now();
    const code = await worker.stop("SIGTERM");
    const seconds = (Date.now() - signalledAt) / 1000;

    assert.equal(code, 0);
    assert.ok(seconds >= 1.5 && seconds < 6, `stopped after ${seconds} s`);
    assert.equal((await row(id)).estatus, "pendiente");
    const after = await job(id);
    assert.ok(after, "the prompt is still queued");
    assert.equal(after.failures, 0, "the interruption is not counted against the prompt");
    assert.equal(after.locked_by, null, "and its job is free for the next worker");
    assert.equal(after.run_at.getTime(), queued.run_at.getTime(), "it keeps its place in the queue");
    assert.ok(worker.output.some((l) => l.includes(`prompt ${id} interrupted; it stays pendiente, uncharged, in its place`)));

    llm.behaviour = () => ({});
    const restarted = start();
    await eventually(async () => (await row(id)).estatus === "listo", 20_000, "the prompt to run again");
    assert.deepEqual(await row(id), { estatus: "listo", respuesta: defaultAnswer("más largo que la gracia"), attempts: 0, outcome: "listo" });
    assert.equal(requestsFor("más largo que la gracia").length, 2);
    assert.equal(await restarted.stop("SIGTERM"), 0);
  });

  test("a second signal exits at once; the prompt in flight runs again after the restart", async () => {
    llm.behaviour = (r) => (r.prompt === "dos señales" ? { delayMs: 10_000 } : {});
    const worker = start({ SHUTDOWN_GRACE_SECONDS: "30" });
    await worker.waitFor(/worker ready/);
    const id = await insertOne(db.pool, "dos señales");
    await eventually(async () => requestsFor("dos señales").length === 1, 10_000, "the request to start");

    const signalledAt = Date.now();
    worker.process.kill("SIGTERM");
    await worker.waitFor(/SIGTERM: no new prompt starts/);
    const code = await worker.stop("SIGINT");
    assert.equal(code, 1);
    assert.ok(Date.now() - signalledAt < 3_000);
    assert.ok(worker.output.some((l) => l.includes("SIGINT again: exiting now")));
    assert.equal((await row(id)).estatus, "pendiente");

    llm.behaviour = () => ({});
    const restartedAt = Date.now();
    const restarted = start();
    await eventually(async () => (await row(id)).estatus === "listo", 30_000, "the prompt to run again");
    assert.ok(Date.now() - restartedAt < 30_000);
    assert.equal(await restarted.stop("SIGTERM"), 0);
  });
});

describe("pm2 restart during a long request", () => {
  let pm2: Pm2 | null = null;
  after(async () => {
    await pm2?.kill();
  });

  test("pm2 waits for the worker (kill_timeout > grace): the answer is written once, the old process exits 0 and a new one takes over", async () => {
    pm2 = new Pm2();
    llm.behaviour = (r) => (r.prompt === "reinicio de pm2" ? { delayMs: 6_000 } : {});
    const app = "fila-llm-restart";
    await pm2.start(app, { ...testEnv(llm.origin), DATABASE_URL: db.url });
    const id = await insertOne(db.pool, "reinicio de pm2");
    await eventually(async () => requestsFor("reinicio de pm2").length === 1, 20_000, "the request to start");
    const oldPid = pm2.pid(app);

    await pm2.cli("restart", app);

    assert.equal((await row(id)).estatus, "listo", "the answer was written before the old process exited");
    assert.equal(requestsFor("reinicio de pm2").length, 1);
    assert.notEqual(pm2.pid(app), oldPid);
    assert.ok(pm2.logs(app).some((l) => l.includes("SIGINT: no new prompt starts")));
    assert.match(pm2.daemonLog(), new RegExp(`App \\[${app}:\\d+\\] exited with code \\[0\\] via signal \\[SIGINT\\]`));
    const nextId = await insertOne(db.pool, "después del reinicio");
    await eventually(async () => (await row(nextId)).estatus === "listo", 20_000, "the new process to answer");
  });
});
