/**
 * The LLM client against the test LLM server: both wire formats streamed,
 * the errors sorted by kind, and the guards of a call (timeout, stall,
 * repetition, size, the server lost mid-call).
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { parseConfig } from "../src/config";
import { createLlmClient, LlmError, type LlmClient } from "../src/llm/client";
import { FakeLlm, serverTokens, wordTokens } from "./support/llm_server";
import { referenceTokens } from "./support/tiktoken";

let llm: FakeLlm;
const clients: LlmClient[] = [];
before(async () => {
  llm = await FakeLlm.start();
});
after(async () => {
  for (const c of clients) await c.close();
  await llm.stop();
});
beforeEach(() => {
  llm.requests.length = 0;
  llm.behaviour = () => ({});
  llm.apiKey = null;
  llm.openaiFlavour = "llama.cpp";
  llm.pingSeconds = 30;
});

function client(env: Record<string, string>): LlmClient {
  const settings = parseConfig({ LLM_MODEL: "test-model", ...env }).llm;
  const c = createLlmClient(settings, settings.baseUrls[0]);
  clients.push(c);
  return c;
}
const ollama = (env: Record<string, string> = {}) => client({ LLM_BASE_URL: llm.origin, ...env });
const openai = (env: Record<string, string> = {}) => client({ LLM_PROVIDER: "openai", LLM_BASE_URL: llm.openaiBaseUrl, ...env });

async function failure(promise: Promise<unknown>): Promise<LlmError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof LlmError, `expected an LlmError, got ${error}`);
    return error;
  }
  assert.fail("the call succeeded");
}

describe("ollama wire format, streamed", () => {
  test("POSTs /api/generate with stream true, the model, the system prompt and options, and reads the NDJSON lines and the last line's counts", async () => {
    const c = ollama({ LLM_SYSTEM_PROMPT: "Responde en español.", LLM_TEMPERATURE: "0.2", LLM_MAX_TOKENS: "64" });
    const answer = await c.generate("Hola, ¿qué tal?");
    const [req] = llm.generateRequests;
    assert.equal(req.path, "/api/generate");
    assert.deepEqual(req.body, {
      model: "test-model",
      prompt: "Hola, ¿qué tal?",
      stream: true,
      keep_alive: 1800,
      truncate: false,
      system: "Responde en español.",
      options: { temperature: 0.2, num_predict: 64 },
    });
    assert.ok(req.tokensStreamed > 1, "it came token by token");
    assert.equal(answer.text, "Respuesta para: Hola, ¿qué tal?");
    assert.equal(answer.model, "test-model");
    assert.equal(answer.finishReason, "stop");
    assert.equal(answer.serverTokensIn, serverTokens("Hola, ¿qué tal?"));
    assert.equal(answer.serverTokensOut, req.tokensStreamed);
    // Ollama's durations, in nanoseconds on the wire, in seconds here.
    assert.deepEqual(answer.timings, { loadSeconds: 0.005025959, promptEvalSeconds: 0.325953, evalSeconds: 4.709213 });
  });

  test("LLM_CONTEXT_TOKENS is sent as num_ctx, with keep_alive from LLM_KEEP_ALIVE, on every request", async () => {
    const c = ollama({ LLM_CONTEXT_TOKENS: "65536", LLM_KEEP_ALIVE: "2h" });
    await c.generate("uno");
    await c.generate("dos");
    for (const req of llm.generateRequests) {
      assert.deepEqual([req.body.options, req.body.keep_alive, req.body.truncate], [{ num_ctx: 65536 }, 7200, false]);
    }
  });

  test("done_reason length is read: an answer a token limit cut short says so", async () => {
    llm.behaviour = () => ({ text: "una respuesta cortada a la mi", finishReason: "length" });
    const answer = await ollama().generate("x");
    assert.equal(answer.finishReason, "length");
    assert.equal(answer.text, "una respuesta cortada a la mi");
  });

  test("reuses one keep-alive connection for consecutive calls", async () => {
    const c = ollama();
    for (let i = 0; i < 5; i++) await c.generate(`p${i}`);
    const ports = new Set(llm.generateRequests.map((r) => r.remotePort));
    assert.equal(llm.generateRequests.length, 5);
    assert.equal(ports.size, 1, `connections used: ${[...ports].join(", ")}`);
  });

  test("lines and UTF-8 characters split across network reads are put back together", async () => {
    const lines = ["Dime ", "😀👩‍👩‍👧 y ñandú, ", "acción"].map((t) => JSON.stringify({ model: "test-model", created_at: "2026-12-01T01:00:00Z", response: t, done: false }));
    const last = JSON.stringify({ model: "test-model", created_at: "2026-12-01T01:00:01Z", response: "", done: true, done_reason: "stop", prompt_eval_count: 2, eval_count: 3 });
    llm.behaviour = () => ({ rawBody: [...lines, last].join("\n") + "\n", rawChunkBytes: 7 });
    const answer = await ollama().generate("x");
    assert.equal(answer.text, "Dime 😀👩‍👩‍👧 y ñandú, acción");
    assert.deepEqual([answer.serverTokensIn, answer.serverTokensOut], [2, 3]);
  });

  test("an error line after the 200 is a failure with the server's message, not an answer", async () => {
    llm.behaviour = () => ({ text: "empieza bien y luego", errorAfterTokens: { tokens: 2, message: "an error was encountered while running the model: unexpected EOF" } });
    const e = await failure(ollama().generate("x"));
    assert.equal(e.kind, "unavailable");
    assert.match(e.message, /reported an error while answering: an error was encountered while running the model: unexpected EOF/);
  });

  test("a stream that ends without its done line is cut off, not an answer", async () => {
    const line = JSON.stringify({ model: "test-model", created_at: "2026-12-01T01:00:00Z", response: "a medias", done: false });
    llm.behaviour = () => ({ rawBody: line + "\n" });
    const e = await failure(ollama().generate("x"));
    assert.equal(e.kind, "unavailable");
    assert.match(e.message, /stopped before its end/);
  });
});

describe("openai wire format, streamed", () => {
  for (const flavour of ["llama.cpp", "vllm"] as const) {
    test(`${flavour}: POSTs {base}/chat/completions with stream, include_usage and a bearer key, and reads the deltas, finish_reason and usage`, async () => {
      llm.openaiFlavour = flavour;
      llm.apiKey = "sk-test-123456";
      const answer = await openai({ LLM_API_KEY: "sk-test-123456", LLM_MAX_TOKENS: "10" }).generate("¿Cuánto es 2+2?");
      const [req] = llm.generateRequests;
      assert.equal(req.path, "/v1/chat/completions");
      assert.equal(req.headers.authorization, "Bearer sk-test-123456");
      assert.deepEqual(req.body, {
        model: "test-model",
        messages: [{ role: "user", content: "¿Cuánto es 2+2?" }],
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: 10,
      });
      assert.equal(answer.text, "Respuesta para: ¿Cuánto es 2+2?");
      assert.equal(answer.finishReason, "stop");
      assert.equal(answer.serverTokensIn, serverTokens("¿Cuánto es 2+2?"));
      assert.equal(answer.serverTokensOut, req.tokensStreamed);
    });
  }

  test("finish_reason length is read", async () => {
    llm.behaviour = () => ({ finishReason: "length" });
    assert.equal((await openai().generate("x")).finishReason, "length");
  });

  test("a server that sends no usage chunk is fine: the answer has no server counts", async () => {
    const chunk = (delta: object, finish: string | null) =>
      `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "test-model", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    llm.behaviour = () => ({ rawBody: chunk({ role: "assistant", content: "" }, null) + chunk({ content: "hola" }, null) + chunk({}, "stop") + "data: [DONE]\n\n" });
    const answer = await openai().generate("x");
    assert.deepEqual([answer.text, answer.finishReason, answer.serverTokensIn, answer.serverTokensOut], ["hola", "stop", null, null]);
  });

  test("SSE as TGI writes it (no space after data:), with CRLF line ends and comments, is read", async () => {
    const chunk = (delta: object, finish: string | null) =>
      `data:${JSON.stringify({ model: "tgi", choices: [{ index: 0, delta, finish_reason: finish }] })}\r\n\r\n`;
    llm.behaviour = () => ({ rawBody: ": keep-alive\r\n\r\n" + chunk({ content: "uno " }, null) + chunk({ content: "dos" }, "stop"), rawChunkBytes: 5 });
    const answer = await openai().generate("x");
    assert.deepEqual([answer.text, answer.model], ["uno dos", "tgi"]);
  });

  test("an error event after the 200 is a failure with the server's message (llama.cpp: no [DONE]; vLLM: [DONE] after it)", async () => {
    for (const flavour of ["llama.cpp", "vllm"] as const) {
      llm.openaiFlavour = flavour;
      llm.behaviour = () => ({ errorAfterTokens: { tokens: 2, message: "CUDA error: out of memory" } });
      const e = await failure(openai().generate("x"));
      assert.equal(e.kind, "unavailable", flavour);
      assert.match(e.message, /reported an error while answering: CUDA error: out of memory/, flavour);
    }
  });

  test("LM Studio's event: error after a 200 is a failure", async () => {
    llm.behaviour = () => ({
      rawBody: 'event: error\ndata: {"error":{"message":"Input does not fit in context length."},"message":"Input does not fit in context length."}\n\n',
    });
    const e = await failure(openai().generate("x"));
    assert.match(e.message, /Input does not fit in context length/);
  });

  test("sends no Authorization header without LLM_API_KEY, and puts the system prompt first", async () => {
    await openai({ LLM_SYSTEM_PROMPT: "Sé breve." }).generate("hola");
    const [req] = llm.generateRequests;
    assert.equal(req.headers.authorization, undefined);
    assert.deepEqual(req.body.messages, [{ role: "system", content: "Sé breve." }, { role: "user", content: "hola" }]);
  });
});

describe("errors are sorted by what they mean", () => {
  for (const status of [400, 413, 422]) {
    test(`HTTP ${status} is the prompt's fault (rejected) and carries the server's message`, async () => {
      llm.behaviour = () => ({ status, rawBody: JSON.stringify({ error: "context length exceeded: 9000 > 8192" }) });
      const e = await failure(ollama().generate("x"));
      assert.equal(e.kind, "rejected");
      assert.equal(e.httpStatus, status);
      assert.match(e.message, /context length exceeded: 9000 > 8192/);
    });
  }

  test("403 is a configuration fault and carries the server's message", async () => {
    llm.behaviour = () => ({ status: 403, rawBody: JSON.stringify({ error: "this key may not use this model" }) });
    const forbidden = await failure(ollama().generate("x"));
    assert.equal(forbidden.kind, "config");
    assert.equal(forbidden.httpStatus, 403);
    assert.match(forbidden.message, /HTTP 403: this key may not use this model/);
  });

  test("401 and an unknown model's 404 are configuration faults", async () => {
    llm.apiKey = "right-key";
    const wrongKey = await failure(openai({ LLM_API_KEY: "wrong-key" }).generate("x"));
    assert.equal(wrongKey.kind, "config");
    assert.equal(wrongKey.httpStatus, 401);
    assert.ok(!wrongKey.message.includes("wrong-key"));
    const noModel = await failure(ollama({ LLM_MODEL: "no-such-model" }).generate("x"));
    assert.equal(noModel.kind, "config");
    assert.match(noModel.message, /model 'no-such-model' not found/);
  });

  test("429 and 5xx are unavailable, with Retry-After read", async () => {
    llm.behaviour = () => ({ status: 429, headers: { "retry-after": "7" } });
    const limited = await failure(ollama().generate("x"));
    assert.deepEqual([limited.kind, limited.httpStatus, limited.retryAfterSeconds], ["unavailable", 429, 7]);
    llm.behaviour = () => ({ status: 503 });
    const down = await failure(ollama().generate("x"));
    assert.deepEqual([down.kind, down.httpStatus], ["unavailable", 503]);
  });

  test("a refused connection is unavailable", async () => {
    const e = await failure(client({ LLM_BASE_URL: "http://127.0.0.1:1" }).generate("x"));
    assert.equal(e.kind, "unavailable");
    assert.match(e.message, /ECONNREFUSED/);
  });

  test("no answer at all within LLM_TIMEOUT_SECONDS is unavailable (the policy probes to tell a dead server from a slow prompt)", async () => {
    llm.behaviour = () => ({ delayMs: 3000 });
    const started = Date.now();
    const e = await failure(ollama({ LLM_TIMEOUT_SECONDS: "1" }).generate("x"));
    assert.equal(e.kind, "unavailable");
    assert.match(e.message, /did not answer within LLM_TIMEOUT_SECONDS \(1 s\)/);
    assert.ok(Date.now() - started < 2900);
  });

  test("a body cut mid-stream and a hang-up are unavailable; the cut stream keeps what came", async () => {
    for (const make of [ollama, openai]) {
      llm.behaviour = () => ({ text: "uno dos tres cuatro cinco", cutAfterTokens: 3 });
      const cut = await failure(make().generate("x"));
      assert.equal(cut.kind, "unavailable");
      assert.match(cut.message, /cut off after 3 tokens/);
      assert.equal(cut.partialAnswer, "uno dos tres");
    }
    llm.behaviour = () => ({ hangUp: true });
    assert.equal((await failure(ollama().generate("x"))).kind, "unavailable");
  });

  test("a whole JSON body cut short, from a server that did not stream, is a bad response", async () => {
    llm.behaviour = () => ({ rawBody: '{"model":"test-model","response":"hola, esto se cor', headers: { "content-type": "application/json" } });
    const e = await failure(ollama().generate("x"));
    assert.equal(e.kind, "bad_response");
    assert.match(e.message, /not JSON/);
  });

  test("a line that is not JSON, or a 200 JSON body without its text, is a bad response", async () => {
    llm.behaviour = () => ({ rawBody: "<html>gateway</html>\n" });
    const notJson = await failure(ollama().generate("x"));
    assert.equal(notJson.kind, "bad_response");
    assert.match(notJson.message, /not JSON/);
    llm.behaviour = () => ({ rawBody: JSON.stringify({ model: "test-model", done: true }), headers: { "content-type": "application/json" } });
    const noText = await failure(ollama().generate("x"));
    assert.equal(noText.kind, "bad_response");
    assert.match(noText.message, /without a "response" string/);
  });

  test("a 200 whose whole JSON body is an error (LM Studio) is that error, with its message", async () => {
    llm.behaviour = () => ({ rawBody: JSON.stringify({ error: "Model unloaded." }), headers: { "content-type": "application/json" } });
    const e = await failure(openai().generate("x"));
    assert.match(e.message, /Model unloaded\./);
  });

  test("an answer growing past LLM_MAX_RESPONSE_BYTES is cut there, as too_large, without reading the rest", async () => {
    llm.behaviour = () => ({ streamBytes: 50 * 1024 * 1024 });
    const e = await failure(ollama({ LLM_MAX_RESPONSE_BYTES: "100000" }).generate("x"));
    assert.equal(e.kind, "too_large");
    assert.match(e.message, /exceeded LLM_MAX_RESPONSE_BYTES \(100000 bytes\)/);
    const [req] = llm.generateRequests;
    assert.ok(req.bytesStreamed! < 5 * 1024 * 1024, `the server wrote ${req.bytesStreamed} bytes before the client left`);
  });

  test("an aborted call is reported as aborted", async () => {
    llm.behaviour = () => ({ delayMs: 2000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    assert.equal((await failure(ollama().generate("x", controller.signal))).kind, "aborted");
  });

  test("the health probe tells a live server from a dead one, on its own connection while a call is in flight", async () => {
    assert.equal(await ollama().isReachable(), true);
    assert.equal(await openai().isReachable(), true);
    assert.equal(await client({ LLM_BASE_URL: "http://127.0.0.1:1" }).isReachable(), false);
    llm.behaviour = () => ({ firstTokenDelayMs: 1500 });
    const c = ollama();
    const call = c.generate("largo");
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    assert.equal(await c.isReachable(), true);
    assert.ok(Date.now() - started < 1000, "the probe did not wait for the call");
    await call;
  });
});

describe("the guards of a call", () => {
  test("a loop is cut as repetition, with its block, count, tokens and time, and what came before it kept", async () => {
    // A token every 2 ms, so that the client reads them about one at a time, as from a real server.
    llm.behaviour = () => ({ tokens: wordTokens("Claro, aquí va:"), loopTokens: [" =", " ="], tokenDelayMs: 2 });
    const e = await failure(ollama().generate("x"));
    assert.equal(e.kind, "repetition");
    assert.match(e.message, /^generation cut: the answer repeated "( =|= )" \d+ times \(\d+ tokens in \d+ s\)$/);
    assert.ok(e.partialAnswer!.startsWith("Claro, aquí va: = = ="));
    // The server writes as fast as it can; what counts is where the client cut it.
    assert.ok(e.partialAnswer!.length < 600, `cut after ${e.partialAnswer!.length} characters`);
  });

  test("with LLM_REPETITION_GUARD=off the same loop runs until LLM_TIMEOUT_SECONDS, and is cut as a timeout", async () => {
    llm.behaviour = () => ({ loopTokens: [" ="], tokenDelayMs: 5 });
    const e = await failure(ollama({ LLM_REPETITION_GUARD: "off", LLM_TIMEOUT_SECONDS: "2", LLM_STALL_SECONDS: "1" }).generate("x"));
    assert.equal(e.kind, "timeout");
    assert.match(e.message, /^generation cut: still generating at LLM_TIMEOUT_SECONDS \(2 s\) after [\d,]+ tokens$/);
  });

  test("a stall after some output is cut at LLM_STALL_SECONDS, also while llama-server sends its pings", async () => {
    for (const [provider, make] of [["ollama", ollama], ["openai", openai]] as const) {
      llm.pingSeconds = 0.3;
      llm.behaviour = () => ({ text: "uno dos tres cuatro", stallAfterTokens: 2 });
      const started = Date.now();
      const e = await failure(make({ LLM_STALL_SECONDS: "1.5" }).generate("x"));
      const seconds = (Date.now() - started) / 1000;
      assert.equal(e.kind, "stall", provider);
      assert.equal(e.message, "generation cut: no output for 1.5 s after 2 tokens (LLM_STALL_SECONDS)", provider);
      assert.equal(e.partialAnswer, "uno dos", provider);
      assert.ok(seconds >= 1.4 && seconds < 3.5, `${provider}: cut after ${seconds} s`);
    }
  });

  test("the wait for the first token is bounded by LLM_TIMEOUT_SECONDS only, not by the stall guard", async () => {
    llm.behaviour = () => ({ firstTokenDelayMs: 2500 });
    const answer = await ollama({ LLM_STALL_SECONDS: "1", LLM_TIMEOUT_SECONDS: "10" }).generate("tarda en empezar");
    assert.equal(answer.text, "Respuesta para: tarda en empezar");
  });

  test("a server that stops answering its probe while it holds the call open (llama-server after SIGTERM) is cut as server_lost", async () => {
    llm.behaviour = () => ({ firstTokenDelayMs: 60_000 });
    const c = ollama({ LLM_STALL_SECONDS: "3" });
    const started = Date.now();
    const call = failure(c.generate("x"));
    await new Promise((r) => setTimeout(r, 300));
    llm.stopLikeLlamaServer();
    const e = await call;
    const seconds = (Date.now() - started) / 1000;
    assert.equal(e.kind, "server_lost");
    assert.match(e.message, /stopped answering during the call \(its health probe has failed for \d+ s\)/);
    assert.ok(seconds < 10, `cut after ${seconds} s`);
    await llm.restart();
  });

  describe("long, healthy streams are never cut", { concurrency: true }, () => {
    // Both run at once, so one behaviour serves both, by prompt.
    const slowTokens = [" uno", " dos", " tres", " cuatro"];
    const rows = Array.from({ length: 60 }, (_, i) => `| ${i + 1} | ${(i * 37) % 101} | fila número ${i + 1} |`).join("\n");
    const section = (n: number) => `\n## Resultado\n\nEl caso ${n} dio ${n * 3} aciertos y ${n % 7} errores.\n\n| n | valor | nota |\n|---|---|---|\n${rows}\n`;
    const longTokens = referenceTokens(Array.from({ length: 12 }, (_, i) => section(i + 1)).join("")).slice(0, 1200);
    beforeEach(() => {
      llm.behaviour = (r) =>
        r.prompt === "lento" ? { tokens: slowTokens, tokenDelayMs: 10_000 } : r.prompt === "largo y variado" ? { tokens: longTokens, tokenDelayMs: 50 } : {};
    });

    test("a slow but alive stream: one token every 10 s with LLM_STALL_SECONDS=30", async () => {
      const tokens = slowTokens;
      const answer = await ollama({ LLM_STALL_SECONDS: "30" }).generate("lento");
      assert.equal(answer.text, tokens.join(""));
      assert.equal(answer.finishReason, "stop");
    });

    test("a long varied answer of 60 s, at 20 tokens a second, with tables and repeated headings", async () => {
      const tokens = longTokens;
      assert.equal(tokens.length, 1200);
      const started = Date.now();
      const answer = await ollama().generate("largo y variado");
      assert.ok(Date.now() - started > 55_000, "it really took about a minute");
      assert.equal(answer.text, tokens.join(""));
      assert.equal(answer.finishReason, "stop");
    });
  });
});
