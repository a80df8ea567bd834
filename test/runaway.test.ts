/**
 * No runaway generation eats the night: with a real worker and the test LLM
 * server streaming as Ollama and as llama.cpp's llama-server do, a looping
 * prompt among ordinary ones is cut within seconds and ends 'error', the
 * others are answered, a stalled stream is retried, and a server that goes
 * silent mid-call (llama-server after SIGTERM) costs the prompt nothing.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { createTestDatabase, insert, reset, type TestDatabase } from "./support/db";
import { defaultAnswer, FakeLlm, wordTokens } from "./support/llm_server";
import { referenceTokens } from "./support/tiktoken";
import { eventually, startInProcessWorker, testEnv, type InProcessWorker } from "./support/worker";

let db: TestDatabase;
let llm: FakeLlm;
before(async () => {
  db = await createTestDatabase();
  llm = await FakeLlm.start();
});
after(async () => {
  await llm.stop();
  await db.drop();
});

async function rowsOf(ids: number[]) {
  const { rows } = await db.pool.query(
    `SELECT a.id, a.prompt, a.estatus, a.respuesta, o.error_message, o.attempts, o.finish_reason, o.cut_answer_head, o.cut_answer_tail
       FROM fila_llm_anahuac a LEFT JOIN fila_llm_outcome o ON o.prompt_id = a.id
      WHERE a.id = ANY($1) ORDER BY a.id`,
    [ids],
  );
  return rows;
}

async function settled(ids: number[], timeoutMs = 30_000) {
  return eventually(async () => {
    const rows = await rowsOf(ids);
    return rows.every((r) => r.estatus !== "pendiente") ? rows : null;
  }, timeoutMs, `rows ${ids.join(",")} to leave pendiente`);
}

const LOOP_PREFIX = "Claro, aquí tienes la tabla:\n\n";
// 20 tokens a second: the slowest rate at which a loop must still be cut within 10 s.
const TWENTY_PER_SECOND_MS = 50;

for (const provider of ["ollama", "openai"] as const) {
  describe(`${provider}: a looping prompt among ordinary ones`, () => {
    let worker: InProcessWorker;
    before(async () => {
      await reset(db.pool);
      const url = provider === "ollama" ? llm.origin : llm.openaiBaseUrl;
      worker = await startInProcessWorker(db, testEnv(url, { LLM_PROVIDER: provider }));
    });
    after(() => worker.stop());
    beforeEach(() => {
      llm.requests.length = 0;
    });

    test('the loop ("= " for ever, 20 tokens/s) ends error with its message and finish_reason repetition within 10 s of its start; the others are answered', async () => {
      llm.behaviour = (r) =>
        r.prompt === "haz una tabla"
          ? { tokens: referenceTokens(LOOP_PREFIX), loopTokens: [" ="], tokenDelayMs: TWENTY_PER_SECOND_MS }
          : { tokenDelayMs: 5 };
      const ids = await insert(db.pool, "uno", "dos", "haz una tabla", "tres", "cuatro");
      const rows = await settled(ids);
      assert.deepEqual(rows.map((r) => r.estatus), ["listo", "listo", "error", "listo", "listo"]);
      for (const r of rows.filter((r) => r.estatus === "listo")) {
        assert.equal(r.respuesta, defaultAnswer(r.prompt));
        assert.equal(r.finish_reason, "stop");
      }
      const loop = rows[2];
      assert.match(loop.error_message, /^generation cut: the answer repeated "( =|= )" [\d,]+ times \([\d,]+ tokens in \d+ s\)$/);
      assert.equal(loop.finish_reason, "repetition");
      assert.equal(loop.attempts, 1);
      assert.ok(loop.cut_answer_head.startsWith(LOOP_PREFIX + " = ="), "the cut answer's beginning is kept");
      assert.match(loop.cut_answer_tail, /( =){20}$/, "and its end");

      const calls = llm.generateRequests.filter((r) => r.prompt === "haz una tabla");
      assert.equal(calls.length, 1, "a loop is not retried");
      const [call] = calls;
      assert.ok(call.loopStartedAtMs !== null && call.endedAtMs !== null && call.clientLeft, "the worker cut the call");
      const seconds = (call.endedAtMs! - call.loopStartedAtMs!) / 1000;
      assert.ok(seconds <= 10, `cut ${seconds} s after the loop started`);
      assert.ok(worker.logs.some((l) => l.includes(`prompt ${loop.id} error`) && l.includes("generation cut")));
    });

    test("a paragraph repeated verbatim is cut before the end of its fourth copy", async () => {
      const paragraph =
        "El sistema procesa cada solicitud en orden, registra su resultado y continúa con la siguiente " +
        "sin detenerse, de modo que la cola avanza de forma constante durante toda la noche.\n";
      llm.behaviour = (r) => (r.prompt === "explica la cola" ? { tokens: referenceTokens(LOOP_PREFIX), loopTokens: referenceTokens(paragraph), tokenDelayMs: 2 } : {});
      const [id] = await insert(db.pool, "explica la cola");
      const [row] = await settled([id]);
      assert.equal(row.estatus, "error");
      assert.equal(row.finish_reason, "repetition");
      assert.match(row.error_message, /a block of 1\d\d characters\) \d times/);
      // The whole cut answer fits in the kept head (2 KB): 4 copies would be 4 × 186 characters.
      const loopChars = row.cut_answer_head.length - LOOP_PREFIX.length;
      assert.ok(loopChars < 4 * paragraph.length, `cut at ${loopChars} characters: ${(loopChars / paragraph.length).toFixed(2)} copies`);
    });

    test("a stream that stalls after some output is cut at LLM_STALL_SECONDS and, the server answering, retried as a counted failure", async () => {
      await worker.stop();
      const url = provider === "ollama" ? llm.origin : llm.openaiBaseUrl;
      worker = await startInProcessWorker(db, testEnv(url, { LLM_PROVIDER: provider, LLM_STALL_SECONDS: "1", LLM_RETRY_DELAY_SECONDS: "0.2" }));
      let first = true;
      llm.behaviour = (r) => {
        if (r.prompt !== "se atasca" || !first) return {};
        first = false;
        return { text: "empieza y se queda", stallAfterTokens: 2 };
      };
      const ids = await insert(db.pool, "se atasca", "otra más");
      const rows = await settled(ids);
      assert.deepEqual(rows.map((r) => [r.estatus, r.finish_reason, r.attempts]), [["listo", "stop", 1], ["listo", "stop", 0]]);
      assert.ok(
        worker.logs.some((l) => l.includes(`prompt ${ids[0]} failed; retrying`) && l.includes("generation cut: no output for 1 s after 2 tokens")),
        worker.logs.filter((l) => l.includes("[prompt]")).join("\n"),
      );
    });
  });
}

describe("a server that goes silent mid-call and refuses its probe (llama-server after SIGTERM)", () => {
  test("the call is cut as an outage: no attempt used, the prompt keeps its place and is answered by the server that comes back", async () => {
    await reset(db.pool);
    llm.requests.length = 0;
    const worker = await startInProcessWorker(db, testEnv(llm.openaiBaseUrl, { LLM_PROVIDER: "openai", LLM_STALL_SECONDS: "3", LLM_OUTAGE_MAX_BACKOFF_SECONDS: "1" }));
    try {
      let hang = true;
      llm.behaviour = (r) => (hang && r.prompt === "larga" ? { tokens: wordTokens("una respuesta que no termina nunca"), stallAfterTokens: 3 } : {});
      const ids = await insert(db.pool, "larga", "después");
      await eventually(async () => llm.generateRequests.some((r) => r.prompt === "larga" && r.tokensStreamed === 3), 10_000, "the call to start streaming");
      const stoppedAtMs = Date.now();
      llm.stopLikeLlamaServer();
      await eventually(async () => worker.logs.some((l) => l.includes("LLM unavailable")), 15_000, "the outage");
      const cutSeconds = (Date.now() - stoppedAtMs) / 1000;
      assert.ok(cutSeconds < 10, `the worker gave up on the silent call after ${cutSeconds} s`);
      hang = false;
      await llm.restart();
      const rows = await settled(ids);
      assert.deepEqual(rows.map((r) => [r.estatus, r.attempts]), [["listo", 0], ["listo", 0]], "nobody was charged for the outage");
      const order = llm.generateRequests.map((r) => r.prompt);
      assert.deepEqual(order, ["larga", "larga", "después"], "the interrupted prompt kept its place");
    } finally {
      await worker.stop();
    }
  });
});
