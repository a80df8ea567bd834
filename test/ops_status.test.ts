/**
 * The status screen, on seeded rows and nights. The window is 01:00–06:00 in
 * America/Mexico_City (UTC−6, no daylight saving): night 2026-11-27 runs
 * from 07:00Z to 12:00Z. "Now" is 2026-11-27 09:00 there (15:00Z).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Pool } from "pg";
import { parseConfig } from "../src/config";
import { readStatus, renderStatus } from "../src/ops/status";
import { databaseBed } from "./support/bed";
import { cliEnv, runCli, seedRun } from "./support/ops";

const window = parseConfig({ WINDOW_START: "01:00", WINDOW_END: "06:00", WINDOW_TZ: "America/Mexico_City" }).window;
const NOW = new Date("2026-11-27T15:00:00Z");

const db = databaseBed();

/** Last night's runs, one from the night before, one in the daytime, and three pending rows. */
async function seedNights() {
  const listo = async (finishedAt: string, seconds: number, tokensOut: number) =>
    seedRun(db.pool, { estatus: "listo", finishedAt, seconds, tokensIn: 10, tokensOut });
  await listo("2026-11-27T07:05:00Z", 10, 100);
  await listo("2026-11-27T08:00:00Z", 20, 200);
  await listo("2026-11-27T09:00:00Z", 30, 300);
  await listo("2026-11-27T10:00:00Z", 40, 400);
  // Started at 05:58:20 local and ran across the closing: it is last night's.
  await listo("2026-11-27T12:00:00Z", 100, 1000);
  const timeout = await seedRun(db.pool, { estatus: "error", finishedAt: "2026-11-27T08:30:00Z", seconds: 5, message: "HTTP 500" });
  const timeout2 = await seedRun(db.pool, { estatus: "error", finishedAt: "2026-11-27T08:40:00Z", seconds: 5, message: "HTTP 500" });
  const empty = await seedRun(db.pool, { estatus: "error", finishedAt: "2026-11-26T08:00:00Z", seconds: 0, message: "the prompt is empty" });
  // An error the old system left, with no message and no fecha_out.
  const legacy = await seedRun(db.pool, { estatus: "error" });
  // The night before (30 s), and an open-now run in the daytime (500 s): neither is last night's.
  await listo("2026-11-26T09:00:00Z", 30, 300);
  await listo("2026-11-27T13:00:00Z", 500, 5000);
  const pending = [];
  for (let i = 0; i < 3; i++) {
    pending.push(await seedRun(db.pool, { estatus: "pendiente", insertedAt: new Date(Date.now() - 2 * 3600_000).toISOString() }));
  }
  return { timeout, timeout2, empty, legacy, pending };
}

describe("status", () => {
  test("last night counts the runs that overlap 01:00–06:00 local, with median, p95, max, tokens per second and busy fraction", async () => {
    await seedNights();
    const s = await readStatus(db.pool, window, NOW);
    const n = s.lastNight;
    assert.equal(n.night, "2026-11-27");
    assert.equal(n.opensAt.local, "2026-11-27 01:00");
    assert.equal(n.opensAt.at, "2026-11-27T07:00:00.000Z");
    assert.equal(n.closesAt.at, "2026-11-27T12:00:00.000Z");
    assert.equal(n.listo, 5);
    assert.equal(n.errors, 2);
    assert.equal(n.tokensIn, 50);
    assert.equal(n.tokensOut, 2000);
    assert.equal(n.medianSeconds, 30);
    assert.equal(Math.round(n.p95Seconds! * 1000) / 1000, 88); // 40 + 0.8 × (100 − 40)
    assert.equal(n.maxSeconds, 100);
    assert.equal(n.tokensPerSecond, 10); // 2000 tokens out / 200 s of listo time
    assert.equal(n.busySeconds, 210);
    assert.equal(Math.round(n.busyFraction * 1e6), Math.round((210 / 18000) * 1e6));
  });

  test("last night counts the answers cut short by a token limit and the generations cut, with the LLM time they took", async () => {
    await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-27T07:05:00Z", seconds: 12, finishReason: "stop" });
    await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-27T07:10:00Z", seconds: 40, finishReason: "length" });
    await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-27T07:20:00Z", seconds: 35, finishReason: "length" });
    await seedRun(db.pool, { estatus: "error", finishedAt: "2026-11-27T07:30:00Z", seconds: 14, finishReason: "repetition", message: "generation cut: the answer repeated \"= \" 100 times (104 tokens in 14 s)" });
    await seedRun(db.pool, { estatus: "error", finishedAt: "2026-11-27T08:30:00Z", seconds: 120, finishReason: "stall", message: "generation cut: no output for 120 s after 2 tokens (LLM_STALL_SECONDS)" });
    await seedRun(db.pool, { estatus: "error", finishedAt: "2026-11-27T09:30:00Z", seconds: 3, finishReason: "rejected", message: "the LLM answered HTTP 400: bad" });
    // The night before: not counted.
    await seedRun(db.pool, { estatus: "error", finishedAt: "2026-11-26T08:00:00Z", seconds: 900, finishReason: "timeout", message: "generation cut: still generating" });
    const n = (await readStatus(db.pool, window, NOW)).lastNight;
    assert.deepEqual([n.cutShort, n.cutShortSeconds, n.generationsCut, n.generationsCutSeconds], [2, 75, 2, 134]);
    const text = renderStatus(await readStatus(db.pool, window, NOW));
    assert.match(text, /2 answers cut short by a token limit \(listo, finish_reason length; 1 min\) · 2 generations cut \(loop, stall, timeout or size; 2 min of LLM time\)/);
  });

  test("last night shows the server's own generation speed, the load time, the prompts too long for the context, and how long it ran past its end", async () => {
    // 400 and 600 server tokens in 4 s and 6 s of generation: 100 tokens/s, whatever tiktoken counted.
    await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-27T07:05:00Z", seconds: 6, tokensOut: 200, serverTokensOut: 400, loadSeconds: 3, promptEvalSeconds: 1, evalSeconds: 4 });
    await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-27T08:05:00Z", seconds: 8, tokensOut: 300, serverTokensOut: 600, loadSeconds: 0.01, promptEvalSeconds: 1, evalSeconds: 6 });
    await seedRun(db.pool, { estatus: "error", finishedAt: "2026-11-27T09:00:00Z", seconds: 1, finishReason: "truncated_input", message: "the server trimmed the prompt" });
    // The last one, started at 05:59 local, ended 06:04: four minutes past the end.
    await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-27T12:04:00Z", seconds: 300, tokensOut: 10 });
    const s = await readStatus(db.pool, window, NOW);
    assert.equal(s.lastNight.generationTokensPerSecond, 100);
    assert.equal(Math.round(s.lastNight.loadSeconds * 100) / 100, 3.01);
    assert.equal(s.lastNight.truncatedInputs, 1);
    assert.equal(s.lastNight.overrunSeconds, 240);
    const text = renderStatus(s);
    assert.match(text, /generation speed 100\.0 tokens\/s \(the server's counts over its generation time\)/);
    assert.match(text, /model load inside the runs 3\.0 s · ran 4 min past the window's end/);
    assert.match(text, /1 prompts longer than the server's context \(truncated_input\)/);
    // Tonight's estimate uses the server's own time per prompt (reading + generating: 5 s and 7 s).
    await seedRun(db.pool, { estatus: "pendiente" });
    const tonight = (await readStatus(db.pool, window, NOW)).tonight;
    assert.deepEqual([tonight.basis, tonight.medianSeconds], ["server", 6]);
  });

  test("the LLM's state as the worker last saw it: an outage since when, with the reason, and the last model load", async () => {
    await db.pool.query("DELETE FROM fila_llm_servers");
    await db.pool.query(
      `INSERT INTO fila_llm_servers (server, state, since, message, last_load_at, last_load_seconds)
       VALUES ('http://gpu1:11434/', 'outage', '2026-11-28T08:13:00Z', 'cannot reach the LLM at http://gpu1:11434: ECONNREFUSED', '2026-11-28T07:00:05Z', 3.2)`,
    );
    const text = renderStatus(await readStatus(db.pool, window, NOW));
    assert.match(text, /^LLM +http:\/\/gpu1:11434\/: DOWN \(an outage: prompts wait, none is marked error\) since 2026-11-28 02:13: cannot reach the LLM at http:\/\/gpu1:11434: ECONNREFUSED · last model load 3\.2 s at 2026-11-28 01:00$/m);
    await db.pool.query("DELETE FROM fila_llm_servers");
    assert.match(renderStatus(await readStatus(db.pool, window, NOW)), /^LLM +no worker has reported on the LLM yet$/m);
  });

  test("per lane: up, down or probing, the prompt in flight on it, and its last night's prompts, busy fraction and tokens/s", async () => {
    await db.pool.query("DELETE FROM fila_llm_servers");
    const [gpu1, gpu2, gpu3] = ["http://gpu1:11434/", "http://gpu2:11434/", "http://gpu3:11434/"];
    // Last night (07:00Z–12:00Z): two prompts on gpu1 (1 h of its 5), one on gpu2, with the server's own counts.
    await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-27T08:00:00Z", seconds: 1800, tokensOut: 100, server: gpu1, serverTokensOut: 9000, evalSeconds: 1500 });
    await seedRun(db.pool, { estatus: "error", finishedAt: "2026-11-27T09:00:00Z", seconds: 1800, message: "HTTP 500", server: gpu1 });
    await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-27T10:00:00Z", seconds: 360, tokensOut: 720, server: gpu2 });
    const [running] = [await seedRun(db.pool, { estatus: "pendiente" })];
    await db.pool.query(
      `INSERT INTO fila_llm_servers (server, state, since, message, holder_pool) VALUES
         ($1, 'answering', '2026-11-27T07:00:00Z', NULL, 'pool-a'),
         ($2, 'outage', '2026-11-27T14:00:00Z', 'cannot reach the LLM at http://gpu2:11434: ECONNREFUSED', 'pool-b'),
         ($3, 'probing', '2026-11-27T14:59:00Z', NULL, NULL)`,
      [gpu1, gpu2, gpu3],
    );
    await db.pool.query(
      `UPDATE graphile_worker._private_jobs SET locked_at = now() - interval '12 seconds', locked_by = 'pool-a' WHERE key = fila_llm_job_key($1)`,
      [running],
    );
    const s = await readStatus(db.pool, window, NOW);
    const lane = (server: string) => s.llm.find((l) => l.server === server)!;
    assert.deepEqual(lane(gpu1).running.map((r) => r.promptId), [running]);
    assert.deepEqual(lane(gpu2).running, []);
    assert.deepEqual(lane(gpu1).lastNight, { prompts: 2, busySeconds: 3600, busyFraction: 0.2, tokensPerSecond: 6 });
    assert.deepEqual(lane(gpu2).lastNight, { prompts: 1, busySeconds: 360, busyFraction: 0.02, tokensPerSecond: 2 });
    assert.equal(lane(gpu3).lastNight, null);
    const text = renderStatus(s);
    assert.match(text, /^LLM +http:\/\/gpu1:11434\/: up, answering since 2026-11-27 01:00\n +running now: prompt \d+ for 1\d s · last night: 2 prompts, busy 20%, 6\.0 tokens\/s$/m, text);
    assert.match(text, /^ +http:\/\/gpu2:11434\/: DOWN \(an outage: prompts wait, none is marked error\) since 2026-11-27 08:00: cannot reach .*\n +running now: nothing · last night: 1 prompts, busy 2%, 2\.0 tokens\/s$/m, text);
    assert.match(text, /^ +http:\/\/gpu3:11434\/: PROBING .* since 2026-11-27 08:59\n +running now: nothing · last night: no prompt$/m, text);
  });

  test("with several LLM slots, tonight's estimate and last night's busy fraction are shared among them", async () => {
    await seedNights();
    const one = await readStatus(db.pool, window, NOW);
    const three = await readStatus(db.pool, window, NOW, { servers: 3, perServer: 1 });
    assert.ok(one.tonight.neededSeconds! > 0);
    assert.ok(Math.abs(three.tonight.neededSeconds! - one.tonight.neededSeconds! / 3) < 1e-9, "three servers drain the queue in a third of the time");
    assert.ok(Math.abs(three.lastNight.busyFraction - one.lastNight.busyFraction / 3) < 1e-12, "busy: of three servers' time");
    assert.match(renderStatus(three), /% of the window × 3 slots \(3 servers\)/);
    const batching = await readStatus(db.pool, window, NOW, { servers: 1, perServer: 4 });
    assert.match(renderStatus(batching), /× 4 slots \(1 server × 4 at a time\)/);
  });

  test("the queue shows rows by estatus, the oldest pending row's age and the prompt being processed now", async () => {
    const { pending } = await seedNights();
    await db.pool.query(
      `UPDATE graphile_worker._private_jobs SET locked_at = now() - interval '42 seconds', locked_by = 'worker-test'
        WHERE key = fila_llm_job_key($1)`,
      [pending[0]],
    );
    const s = await readStatus(db.pool, window, NOW);
    assert.equal(s.queue.pendiente, 3);
    assert.equal(s.queue.listo, 7);
    assert.equal(s.queue.error, 4);
    assert.ok(Math.abs(s.queue.oldestPendingSeconds! - 7200) < 60, `oldest: ${s.queue.oldestPendingSeconds}`);
    assert.equal(s.queue.running.length, 1);
    assert.equal(s.queue.running[0].promptId, pending[0]);
    assert.ok(s.queue.running[0].seconds >= 42 && s.queue.running[0].seconds < 60);
    assert.match(renderStatus(s), new RegExp(`running now: prompt ${pending[0]} for 4\\d s`));
  });

  test("the window shows open or closed, the next opening and closing in local time, and pause or forced opening", async () => {
    let s = await readStatus(db.pool, window, NOW);
    assert.equal(s.window.inWindow, false);
    assert.equal(s.window.queueOpen, false);
    assert.equal(s.window.nextOpening!.local, "2026-11-28 01:00");
    assert.equal(s.window.nextClosing!.local, "2026-11-28 06:00");
    const text = renderStatus(s);
    assert.match(text, /^Window +01:00–06:00 America\/Mexico_City: closed$/m);
    assert.match(text, /opens 2026-11-28 01:00 \(in 16 h 00 min\) · closes 2026-11-28 06:00 \(in 21 h 00 min\)/);

    s = await readStatus(db.pool, window, new Date("2026-11-27T08:00:00Z"));
    assert.equal(s.window.inWindow, true);
    assert.equal(s.window.nextClosing!.local, "2026-11-27 06:00");
    assert.equal(s.window.nextOpening!.local, "2026-11-28 01:00");

    await db.pool.query("SELECT fila_llm_pause()");
    s = await readStatus(db.pool, window, new Date("2026-11-27T08:00:00Z"));
    assert.equal(s.window.paused, true);
    assert.equal(s.window.queueOpen, false);
    assert.match(renderStatus(s), /PAUSED/);

    // open_until is set by the database's clock, so this part reads the status as of now.
    await db.pool.query("SELECT fila_llm_resume(); SELECT fila_llm_open_now(interval '2 hours')");
    s = await readStatus(db.pool, window, new Date());
    assert.equal(s.window.queueOpen, true);
    assert.ok(s.window.forcedOpenUntil, "forced open");
    assert.match(renderStatus(s), /FORCED OPEN until \d{4}-\d{2}-\d{2} \d{2}:\d{2}/);
  });

  test("tonight: the pending rows fit when pending × the recent nights' median time is within the window", async () => {
    await seedNights();
    let s = await readStatus(db.pool, window, NOW);
    // Listo runs of the last 7 nights: 10, 20, 30, 30, 40, 100 (the daytime one is in no night).
    assert.equal(s.tonight.medianSeconds, 30);
    assert.equal(s.tonight.night, "2026-11-28");
    assert.equal(s.tonight.availableSeconds, 5 * 3600);
    assert.equal(s.tonight.neededSeconds, 90);
    assert.equal(s.tonight.fits, true);
    assert.match(renderStatus(s), /3 pendiente × median 30\.0 s \(last 7 nights\) ≈ 1 min of 5 h 00 min left in the window: fits/);

    await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) SELECT 'más ' || g FROM generate_series(1, 600) g");
    s = await readStatus(db.pool, window, NOW);
    assert.equal(s.tonight.neededSeconds, 603 * 30);
    assert.equal(s.tonight.fits, false);
    assert.match(renderStatus(s), /does NOT fit \(about 2 nights\)/);

    // Inside the window, only what is left of it counts.
    s = await readStatus(db.pool, window, new Date("2026-11-28T11:00:00Z"));
    assert.equal(s.tonight.night, "2026-11-28");
    assert.equal(s.tonight.availableSeconds, 3600);
  });

  test("with nothing finished recently, tonight's estimate says so instead of guessing", async () => {
    await seedRun(db.pool, { estatus: "pendiente" });
    const s = await readStatus(db.pool, window, NOW);
    assert.equal(s.tonight.fits, null);
    assert.match(renderStatus(s), /no 'listo' run in the last 7 nights to estimate from/);
  });

  test("errors are grouped by message with counts and example ids; a row without a message is shown as such", async () => {
    const { timeout, timeout2, empty, legacy } = await seedNights();
    const s = await readStatus(db.pool, window, NOW);
    assert.deepEqual(s.errors, [
      { message: "HTTP 500", count: 2, exampleIds: [timeout, timeout2] },
      { message: "(no message recorded)", count: 1, exampleIds: [legacy] },
      { message: "the prompt is empty", count: 1, exampleIds: [empty] },
    ]);
    assert.match(renderStatus(s), new RegExp(`2 × "HTTP 500"  ids ${timeout}, ${timeout2}`));
  });

  test("fecha_out is read in the session's TimeZone: rows written by now() in America/Mexico_City land in the right night", async () => {
    // A session whose TimeZone is the zone's, as a legacy writer's might be.
    const local = new Pool({ connectionString: db.url, max: 1, options: "-c TimeZone=America/Mexico_City" });
    try {
      await local.query(
        `INSERT INTO fila_llm_anahuac (prompt, fecha_out, estatus, tiempo_ejecucion, tokens_out)
         VALUES ('escrita a la 01:30 local', '2026-11-27 01:30', 'listo', 12, 5)`,
      );
      assert.equal((await readStatus(local, window, NOW)).lastNight.listo, 1);
      // Read by a UTC session, the same wall-clock text would be 19:30 the day before.
      const utc = new Pool({ connectionString: db.url, max: 1, options: "-c TimeZone=UTC" });
      try {
        assert.equal((await readStatus(utc, window, NOW)).lastNight.listo, 0);
      } finally {
        await utc.end();
      }
    } finally {
      await local.end();
    }
  });

  test("`fila-llm status` and `status --json` print the screen with the worker's settings", async () => {
    await seedNights();
    const env = cliEnv(db.url);
    const json = await runCli(["status", "--json"], env);
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout);
    assert.equal(parsed.queue.pendiente, 3);
    assert.equal(parsed.window.spec, "01:00–06:00 America/Mexico_City");
    assert.equal(parsed.errors[0].message, "HTTP 500");

    const text = await runCli(["status"], env);
    assert.equal(text.code, 0, text.stderr);
    for (const label of ["Window", "Queue", "Last night", "Tonight", "Errors"]) assert.match(text.stdout, new RegExp(`^${label} `, "m"));
    assert.match(text.stdout, /pendiente 3 · listo 7 · error 4/);

    const bad = await runCli(["status", "--colour"], env);
    assert.equal(bad.code, 64);
  });
});
