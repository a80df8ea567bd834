/**
 * The model is loaded for the window and released after it: with a real
 * worker, a clock the test moves across 01:00 and 06:00, and the test LLM
 * server acting as Ollama (load and unload requests, a load that takes 3 s
 * or fails) and as llama-server (which answers any model name).
 */
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";
import { testBed } from "./support/bed";
import { insert } from "./support/db";
import { cliEnv, runCli } from "./support/ops";
import { eventually, MovableClock, testEnv } from "./support/worker";

const bed = testBed();
const movable = new MovableClock();
const night = (overrides: Record<string, string> = {}) =>
  testEnv(bed.llm.origin, { WINDOW_START: "01:00", WINDOW_END: "06:00", WINDOW_TZ: "UTC", LLM_OUTAGE_MAX_BACKOFF_SECONDS: "2", LLM_KEEP_ALIVE: "30m", ...overrides });

beforeEach(async () => {
  movable.reset();
  await bed.db.pool.query("DELETE FROM fila_llm_servers");
});

async function rows(ids: number[]) {
  const { rows } = await bed.db.pool.query(
    `SELECT a.id, a.estatus, a.tiempo_ejecucion::float8 AS seconds, o.attempts, o.model, o.server_model, o.load_seconds::float8 AS load_seconds
       FROM fila_llm_anahuac a LEFT JOIN fila_llm_outcome o ON o.prompt_id = a.id WHERE a.id = ANY($1) ORDER BY a.id`,
    [ids],
  );
  return rows;
}
const allListo = async (ids: number[]) => (await rows(ids)).every((r) => r.estatus === "listo");

describe("Ollama: the model for the window", () => {
  test("at the opening with prompts pending the first request is the load (3 s), which no prompt's time includes; at the close an unload arrives within 60 s", async () => {
    bed.llm.loadDelayMs = 3000;
    movable.set("2026-11-27T00:59:50Z");
    const worker = await bed.start(night(), { clock: movable.now });
    const ids = await insert(bed.db.pool, "uno", "dos");
    movable.set("2026-11-27T00:59:58Z");
    await eventually(() => allListo(ids), 20_000, "the night's prompts");
    const [load, ...rest] = bed.llm.posts;
    assert.equal(load.kind, "load", `the first request: ${load.kind}`);
    assert.equal(load.body.keep_alive, 1800);
    assert.ok(load.endedAtMs! - load.startedAtMs >= 2900, "the load took its 3 s");
    assert.deepEqual(rest.map((r) => [r.kind, r.prompt]), [["generate", "uno"], ["generate", "dos"]]);
    const answered = await rows(ids);
    assert.ok(answered[0].seconds < 1, `the first prompt's tiempo_ejecucion is ${answered[0].seconds} s, not the load's 3 s`);
    assert.ok(worker.logs.some((l) => /model test-model loaded in 3\.\d s/.test(l)), "the load is logged with its time");
    const { rows: server } = await bed.db.pool.query("SELECT state, last_load_seconds::float8 AS s FROM fila_llm_servers");
    assert.equal(server[0].state, "answering");
    assert.ok(server[0].s >= 2.9 && server[0].s < 4, `last load ${server[0].s} s`);

    movable.set("2026-11-27T05:59:57Z");
    const closesAtMs = movable.realMs("2026-11-27T06:00:00Z");
    await eventually(async () => bed.llm.posts.some((r) => r.kind === "unload"), 65_000, "the unload");
    const unload = bed.llm.posts.find((r) => r.kind === "unload")!;
    assert.ok(unload.startedAtMs >= closesAtMs && unload.startedAtMs - closesAtMs < 60_000, `unloaded ${unload.startedAtMs - closesAtMs} ms after 06:00`);
    assert.deepEqual(unload.body, { model: "test-model", keep_alive: 0 });
    assert.equal(bed.llm.loaded, null);
  });

  test("a model that cannot load is a configuration fault: logged loudly, nothing charged, retried with back-off, then answered", async () => {
    bed.llm.loadFails = true;
    const worker = await bed.start(night({ WINDOW_START: "00:00", WINDOW_END: "24:00" }));
    const [id] = await insert(bed.db.pool, "espera al modelo");
    await eventually(async () => worker.logs.some((l) => l.includes("LLM configuration fault") && l.includes("could not be loaded") && l.includes("more system memory")), 10_000, "the loud line");
    await eventually(async () => bed.llm.posts.filter((r) => r.kind === "load").length >= 2, 10_000, "a second try");
    assert.equal(bed.llm.generateRequests.length, 0, "no prompt was sent while the model could not load");
    assert.deepEqual((await rows([id]))[0].estatus, "pendiente");
    assert.equal((await rows([id]))[0].attempts, null, "nothing charged");
    const status = await runCli(["status"], cliEnv(bed.db.url, { WINDOW_START: "00:00", WINDOW_END: "24:00", WINDOW_TZ: "UTC" }));
    assert.match(status.stdout, /^LLM +http:\/\/127\.0\.0\.1:\d+\/: DOWN, MISCONFIGURED \(prompts wait until it is fixed\) since .*could not be loaded/m, status.stdout);
    bed.llm.loadFails = false;
    await eventually(() => allListo([id]), 20_000, "the prompt once the model loads");
  });

  test("at start-up the worker says loudly that the server does not list LLM_MODEL, naming what it has", async () => {
    const worker = await bed.start(night({ LLM_MODEL: "llama3.3" }));
    await eventually(async () => worker.logs.some((l) => /ERROR .*does not list LLM_MODEL=llama3\.3; it has: llama3\.2, test-model/.test(l)), 5000, "the check");
  });

  test("the queue emptying inside the window releases the model after 30 s with nothing to start", async () => {
    await bed.start(night({ WINDOW_START: "00:00", WINDOW_END: "24:00" }));
    const ids = await insert(bed.db.pool, "única");
    await eventually(() => allListo(ids), 10_000, "the prompt");
    const doneMs = Date.now();
    await eventually(async () => bed.llm.posts.some((r) => r.kind === "unload"), 45_000, "the unload");
    const afterMs = bed.llm.posts.find((r) => r.kind === "unload")!.startedAtMs - doneMs;
    assert.ok(afterMs >= 29_000 && afterMs < 40_000, `released ${afterMs} ms after the last prompt`);
  });
});

describe("OpenAI-compatible servers keep their model loaded", () => {
  test("llama-server answers any model name: no load or unload is sent, the check names what it has, and the row keeps both names", async () => {
    bed.llm.anyModelAs = "/models/stories260K.gguf";
    const worker = await bed.start(testEnv(bed.llm.openaiBaseUrl, { LLM_PROVIDER: "openai", LLM_MODEL: "llama3.2" }));
    await eventually(
      async () => worker.logs.some((l) => l.includes("does not list LLM_MODEL=llama3.2; it has: /models/stories260K.gguf") && l.includes("answers any model name")),
      5000,
      "the check",
    );
    const [id] = await insert(bed.db.pool, "hola");
    await eventually(() => allListo([id]), 10_000, "the prompt");
    const [row] = await rows([id]);
    assert.deepEqual([row.model, row.server_model], ["llama3.2", "/models/stories260K.gguf"]);
    assert.deepEqual(bed.llm.posts.map((r) => r.kind), ["generate"]);
  });
});
