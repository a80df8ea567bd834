/**
 * kill -9 under the real pm2, with the project's ecosystem.config.cjs: the
 * worker is killed at random moments while it drains 200 prompts, and pm2
 * brings it back each time. Nothing is lost, blocked or answered twice.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createTestDatabase, type TestDatabase } from "../support/db";
import { defaultAnswer, FakeLlm, type RecordedRequest } from "../support/llm_server";
import { eventually, testEnv } from "../support/worker";
import { answersWrittenTwice, Pm2, recordAnswerWrites, sleep } from "./support";

const APP = "fila-llm-kill9";
const PROMPTS = 200;
const KILLS = 10;
// The bound: a killed worker's work goes on within 30 s.
const MAX_RECOVERY_MS = 30_000;

let db: TestDatabase;
let llm: FakeLlm;
let pm2: Pm2;

before(async () => {
  db = await createTestDatabase();
  await recordAnswerWrites(db.pool);
  llm = await FakeLlm.start();
  pm2 = new Pm2();
});
after(async () => {
  await pm2.kill();
  await llm.stop();
  await db.drop();
});

function workerTail(): string {
  return pm2.logs(APP).slice(-40).join("\n");
}

async function pendingCount(): Promise<number> {
  const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM fila_llm_anahuac WHERE estatus = 'pendiente'");
  return rows[0].n;
}

interface Kill {
  pid: number;
  killedAtMs: number;
  /** The prompt whose request was in flight when the worker died, if any. */
  inFlight: string | null;
  /** When pm2's pid file first named the new process. */
  restartSeenAtMs: number;
  /** kill → the new process's first LLM request (of any prompt). */
  recoveryMs: number;
  /** kill → the interrupted prompt's own request again. */
  rerunMs: number | null;
}

describe("kill -9 under pm2", () => {
  test(`${PROMPTS} prompts drain through ${KILLS} kill -9 at random moments: all listo, none answered twice, one request at a time, each recovery within 30 s`, async () => {
    // Each answer carries the request's serial number, so two runs of one prompt would write different answers.
    let serial = 0;
    llm.behaviour = (r) => ({ delayMs: 50 + Math.floor(Math.random() * 151), text: `${defaultAnswer(r.prompt ?? "")} #${++serial}` });
    await db.pool.query(
      "INSERT INTO fila_llm_anahuac (prompt) SELECT 'kill9 ' || lpad(g::text, 3, '0') FROM generate_series(1, $1::int) g",
      [PROMPTS],
    );
    await pm2.start(APP, { ...testEnv(llm.origin), DATABASE_URL: db.url });
    await llm.waitForRequests(1, 30_000);

    const kills: Kill[] = [];
    let since = 0;
    while (kills.length < KILLS) {
      await sleep(300 + Math.random() * 2_700);
      assert.ok((await pendingCount()) > 0, `the queue drained after only ${kills.length} kills`);
      const pid = pm2.pid(APP);
      assert.ok(pid, `pm2 knows the worker's pid before kill ${kills.length + 1}; the worker's last lines:\n${workerTail()}`);
      const open = llm.generateRequests.filter((r) => r.startedAtMs > since && r.endedAtMs === null);
      const killedAtMs = Date.now();
      process.kill(pid, "SIGKILL");
      // A request the dying process wrote just before the signal can still reach
      // the server after it, so only requests that start once pm2 has spawned the
      // new process count as the recovery. Spawn to first request takes ~0.4 s,
      // more than this poll's 50 ms, so none of the new process's is missed.
      await eventually(async () => (pm2.pid(APP) ?? pid) !== pid, 60_000, `pm2 to start a new worker after kill ${kills.length + 1}`);
      const restartSeenAtMs = Date.now();
      // A straggler never ends (its socket is gone): it must not pass for the next kill's request in flight.
      since = restartSeenAtMs;
      const next: RecordedRequest = await eventually(
        async () => llm.generateRequests.find((r) => r.startedAtMs > restartSeenAtMs),
        60_000,
        `an LLM request from the new worker after kill ${kills.length + 1}`,
      );
      kills.push({
        pid, killedAtMs, restartSeenAtMs, inFlight: open[0]?.prompt ?? null, recoveryMs: next.startedAtMs - killedAtMs, rerunMs: null,
      });
    }
    await eventually(async () => (await pendingCount()) === 0, 120_000, "every row to leave pendiente");

    for (const kill of kills) {
      if (kill.inFlight === null) continue;
      const rerun = llm.generateRequests.find((r) => r.prompt === kill.inFlight && r.startedAtMs > kill.restartSeenAtMs);
      kill.rerunMs = rerun ? rerun.startedAtMs - kill.killedAtMs : null;
    }
    console.log(
      `kill -9 recoveries (kill → next LLM request; kill → the interrupted prompt again):\n` +
        kills
          .map(
            (k, i) =>
              `  kill ${String(i + 1).padStart(2)}: pid ${k.pid}, next request after ${(k.recoveryMs / 1000).toFixed(1)} s` +
              (k.inFlight ? `, "${k.inFlight}" was in flight, asked again after ${k.rerunMs === null ? "never" : (k.rerunMs / 1000).toFixed(1) + " s"}` : ", between requests"),
          )
          .join("\n"),
    );

    assert.equal(kills.length, KILLS);
    // Every exit pm2 saw was one of ours: the worker never crashed by itself.
    const exits = pm2.daemonLog().split("\n").filter((line) => /App \[.*\] exited with code/.test(line));
    assert.equal(exits.length, KILLS, `pm2 saw ${exits.length} exits:\n${exits.join("\n")}\nthe worker's last lines:\n${workerTail()}`);
    for (const exit of exits) assert.match(exit, /via signal \[SIGKILL\]/);
    assert.equal(new Set(kills.map((k) => k.pid)).size, KILLS, "each kill hit a new process, started by pm2");
    for (const [i, kill] of kills.entries()) {
      assert.ok(kill.recoveryMs <= MAX_RECOVERY_MS, `recovery ${i + 1} took ${kill.recoveryMs} ms`);
      if (kill.inFlight) assert.ok(kill.rerunMs !== null && kill.rerunMs <= MAX_RECOVERY_MS, `"${kill.inFlight}" ran again ${kill.rerunMs} ms after kill ${i + 1}`);
    }
    const { rows } = await db.pool.query("SELECT id, prompt, estatus, respuesta FROM fila_llm_anahuac ORDER BY id");
    assert.equal(rows.length, PROMPTS);
    for (const row of rows) {
      assert.equal(row.estatus, "listo", `row ${row.id}`);
      assert.ok(row.respuesta.startsWith(`${defaultAnswer(row.prompt)} #`), `row ${row.id} has its own answer: ${row.respuesta}`);
    }
    assert.deepEqual(await answersWrittenTwice(db.pool), [], "no answer was overwritten by a second run");
    assert.equal(llm.maxInFlight, 1, "never two LLM requests at once");
    const { rows: jobs } = await db.pool.query("SELECT count(*)::int AS n FROM fila_llm_jobs");
    assert.equal(jobs[0].n, 0, "no job left locked or queued");
  });
});
