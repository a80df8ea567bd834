/**
 * Bad input, on the way in and on the way back: each case ends with a clear
 * outcome on its row and in the log, and the worker keeps going. (Empty
 * prompts, a 1 MB prompt, a non-JSON answer and rows changed while queued are
 * in pipeline.test.ts.)
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { createTestDatabase, insertOne, type TestDatabase } from "../support/db";
import { defaultAnswer, FakeLlm } from "../support/llm_server";
import { eventually, startInProcessWorker, testEnv, type InProcessWorker } from "../support/worker";

let db: TestDatabase;
let llm: FakeLlm;
let worker: InProcessWorker;

before(async () => {
  db = await createTestDatabase();
  llm = await FakeLlm.start();
  worker = await startInProcessWorker(db, testEnv(llm.origin, { LLM_MAX_ATTEMPTS: "2", LLM_RETRY_DELAY_SECONDS: "0.2" }));
});
after(async () => {
  await worker.stop();
  await llm.stop();
  await db.drop();
});
beforeEach(() => {
  llm.behaviour = () => ({});
});

async function settled(id: number, timeoutMs = 20_000) {
  return eventually(
    async () => {
      const { rows } = await db.pool.query(
        `SELECT a.*, o.error_message, o.attempts FROM fila_llm_anahuac a LEFT JOIN fila_llm_outcome o ON o.prompt_id = a.id
          WHERE a.id = $1 AND a.estatus <> 'pendiente'`,
        [id],
      );
      return rows[0];
    },
    timeoutMs,
    `row ${id} to leave pendiente`,
  );
}

/** The worker is still answering: a plain prompt after the bad one ends listo. */
async function stillWorking(): Promise<void> {
  const id = await insertOne(db.pool, `sigue vivo ${Math.random()}`);
  assert.equal((await settled(id)).estatus, "listo");
}

const logLineFor = (id: number, outcome: string) => worker.logs.find((l) => l.includes(`prompt ${id} ${outcome}`));

describe("bad prompts", () => {
  test("a 10 MB prompt reaches the LLM whole and ends listo, with its tokens counted", async () => {
    const prompt = "Cuéntame la historia de la ciudad de México, con detalle y fechas. ".repeat(160_000).slice(0, 10 * 1024 * 1024);
    const id = await insertOne(db.pool, prompt);
    const row = await settled(id, 120_000);
    assert.equal(row.estatus, "listo", row.error_message);
    assert.equal(llm.generateRequests.at(-1)!.prompt!.length, prompt.length);
    assert.equal(row.respuesta, defaultAnswer(prompt));
    assert.ok(row.tokens_in > 1_000_000, `tokens_in ${row.tokens_in}`);
    assert.ok(logLineFor(id, "listo"));
  });

  test("invalid surrogates become U+FFFD on the way in; with emoji the prompt ends listo", async () => {
    // A JavaScript string can hold half of a surrogate pair; UTF-8 (and so PostgreSQL) cannot.
    const id = await insertOne(db.pool, "mitad \uD800 de un par, otra \uDFFF, y completos 😀👩‍👩‍👧");
    const row = await settled(id);
    assert.equal(row.estatus, "listo", row.error_message);
    assert.equal(row.prompt, "mitad \uFFFD de un par, otra \uFFFD, y completos 😀👩‍👩‍👧");
    assert.equal(llm.generateRequests.at(-1)!.prompt, row.prompt);
    await stillWorking();
  });
});

describe("bad answers", () => {
  test("an answer with invalid surrogates, NUL and emoji is stored readable, and the row is listo", async () => {
    // JSON may carry a lone surrogate as an escape; PostgreSQL text can hold neither it nor NUL.
    llm.behaviour = () => ({ rawBody: '{"model":"test-model","response":"roto \\ud800 aquí \\u0000 y 🚀 bien","done":true}' });
    const id = await insertOne(db.pool, "respuesta con bytes raros");
    const row = await settled(id);
    assert.equal(row.estatus, "listo", row.error_message);
    assert.equal(row.respuesta, "roto \uFFFD aquí \uFFFD y 🚀 bien");
    assert.ok(row.tokens_out > 0);
  });

  test("an answer that is not JSON (cut short) is retried, then the row is error with a clear message", async () => {
    llm.behaviour = (r) => (r.prompt === "json cortado" ? { rawBody: '{"model":"test-model","response":"hola, esto se cor' } : {});
    const id = await insertOne(db.pool, "json cortado");
    const row = await settled(id);
    assert.equal(row.estatus, "error");
    assert.match(row.error_message, /^the LLM sent a line that is not JSON inside its answer \(\d+ chars\) \(failed 2 times; LLM_MAX_ATTEMPTS=2\)$/);
    assert.equal(row.attempts, 2);
    assert.match(logLineFor(id, "error")!, /reason=.*not JSON/);
    await stillWorking();
  });

  test("an answer without its text is retried, then the row is error with a clear message", async () => {
    llm.behaviour = (r) => (r.prompt === "sin texto" ? { omitText: true } : {});
    const id = await insertOne(db.pool, "sin texto");
    const row = await settled(id);
    assert.equal(row.estatus, "error");
    assert.equal(row.error_message, 'the LLM sent a line without a "response" string (failed 2 times; LLM_MAX_ATTEMPTS=2)');
    assert.ok(logLineFor(id, "error"));
    await stillWorking();
  });

  test("a 100 MB answer is cut at LLM_MAX_RESPONSE_BYTES: the row is error at once, and the worker goes on", async () => {
    llm.behaviour = (r) => (r.prompt === "respuesta sin fin" ? { streamBytes: 100 * 1024 * 1024 } : {});
    const id = await insertOne(db.pool, "respuesta sin fin");
    const row = await settled(id, 60_000);
    assert.equal(row.estatus, "error");
    assert.equal(
      row.error_message,
      `the LLM's answer exceeded LLM_MAX_RESPONSE_BYTES (${worker.config.llm.maxResponseBytes} bytes); raise it or set LLM_MAX_TOKENS`,
    );
    assert.equal(row.attempts, 1, "not retried: the same prompt would bring the same flood");
    const request = llm.generateRequests.find((r) => r.prompt === "respuesta sin fin")!;
    await eventually(async () => request.endedAtMs !== null, 10_000, "the server to see the client leave");
    assert.ok(request.bytesStreamed! < 20 * 1024 * 1024, `the server sent only ${request.bytesStreamed} bytes before the worker hung up`);
    assert.ok(logLineFor(id, "error"));
    await stillWorking();
  });
});
