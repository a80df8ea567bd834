import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { parseConfig } from "../src/config";
import { createLlmClient, LlmError, type LlmClient } from "../src/llm/client";
import { FakeLlm } from "./support/llm_server";

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
});

function client(env: Record<string, string>): LlmClient {
  const c = createLlmClient(parseConfig({ LLM_MODEL: "test-model", ...env }).llm);
  clients.push(c);
  return c;
}

async function failure(promise: Promise<unknown>): Promise<LlmError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof LlmError, `expected an LlmError, got ${error}`);
    return error;
  }
  assert.fail("the call succeeded");
}

describe("ollama wire format", () => {
  test("POSTs /api/generate with stream false, the model, the system prompt and options, and reads response and eval counts", async () => {
    const c = client({ LLM_BASE_URL: llm.origin, LLM_SYSTEM_PROMPT: "Responde en español.", LLM_TEMPERATURE: "0.2", LLM_MAX_TOKENS: "64" });
    const answer = await c.generate("Hola, ¿qué tal?");
    const [req] = llm.generateRequests;
    assert.equal(req.path, "/api/generate");
    assert.deepEqual(req.body, {
      model: "test-model",
      prompt: "Hola, ¿qué tal?",
      stream: false,
      system: "Responde en español.",
      options: { temperature: 0.2, num_predict: 64 },
    });
    assert.equal(answer.text, "Respuesta para: Hola, ¿qué tal?");
    assert.equal(answer.model, "test-model");
    assert.equal(answer.serverTokensIn, 3);
    assert.equal(answer.serverTokensOut, 5);
  });

  test("reuses one keep-alive connection for consecutive calls", async () => {
    const c = client({ LLM_BASE_URL: llm.origin });
    for (let i = 0; i < 5; i++) await c.generate(`p${i}`);
    const ports = new Set(llm.generateRequests.map((r) => r.remotePort));
    assert.equal(llm.generateRequests.length, 5);
    assert.equal(ports.size, 1, `connections used: ${[...ports].join(", ")}`);
  });
});

describe("openai wire format", () => {
  test("POSTs {base}/chat/completions with messages and a bearer key, and reads choices and usage", async () => {
    llm.apiKey = "sk-test-123456";
    const c = client({ LLM_PROVIDER: "openai", LLM_BASE_URL: llm.openaiBaseUrl, LLM_API_KEY: "sk-test-123456", LLM_MAX_TOKENS: "10" });
    const answer = await c.generate("¿Cuánto es 2+2?");
    const [req] = llm.generateRequests;
    assert.equal(req.path, "/v1/chat/completions");
    assert.equal(req.headers.authorization, "Bearer sk-test-123456");
    assert.deepEqual(req.body, { model: "test-model", messages: [{ role: "user", content: "¿Cuánto es 2+2?" }], stream: false, max_tokens: 10 });
    assert.equal(answer.text, "Respuesta para: ¿Cuánto es 2+2?");
    assert.equal(answer.serverTokensIn, 3);
    assert.equal(answer.serverTokensOut, 5);
  });

  test("sends no Authorization header without LLM_API_KEY, and puts the system prompt first", async () => {
    const c = client({ LLM_PROVIDER: "openai", LLM_BASE_URL: llm.openaiBaseUrl, LLM_SYSTEM_PROMPT: "Sé breve." });
    await c.generate("hola");
    const [req] = llm.generateRequests;
    assert.equal(req.headers.authorization, undefined);
    assert.deepEqual(req.body.messages, [{ role: "system", content: "Sé breve." }, { role: "user", content: "hola" }]);
  });
});

describe("errors are sorted by what they mean", () => {
  const ollama = () => client({ LLM_BASE_URL: llm.origin });

  for (const status of [400, 413, 422]) {
    test(`HTTP ${status} is the prompt's fault and carries the server's message`, async () => {
      llm.behaviour = () => ({ status, rawBody: JSON.stringify({ error: "context length exceeded: 9000 > 8192" }) });
      const e = await failure(ollama().generate("x"));
      assert.equal(e.kind, "prompt");
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
    const wrongKey = await failure(client({ LLM_PROVIDER: "openai", LLM_BASE_URL: llm.openaiBaseUrl, LLM_API_KEY: "wrong-key" }).generate("x"));
    assert.equal(wrongKey.kind, "config");
    assert.equal(wrongKey.httpStatus, 401);
    assert.ok(!wrongKey.message.includes("wrong-key"));
    const noModel = await failure(client({ LLM_BASE_URL: llm.origin, LLM_MODEL: "no-such-model" }).generate("x"));
    assert.equal(noModel.kind, "config");
    assert.match(noModel.message, /model "no-such-model" not found/);
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

  test("a call longer than LLM_TIMEOUT_SECONDS is cut and unavailable", async () => {
    llm.behaviour = () => ({ delayMs: 3000 });
    const started = Date.now();
    const e = await failure(client({ LLM_BASE_URL: llm.origin, LLM_TIMEOUT_SECONDS: "1" }).generate("x"));
    assert.equal(e.kind, "unavailable");
    assert.match(e.message, /LLM_TIMEOUT_SECONDS \(1 s\)/);
    assert.ok(Date.now() - started < 2900);
  });

  test("a cut-off body and a hang-up are unavailable", async () => {
    llm.behaviour = () => ({ cutOff: true });
    assert.equal((await failure(ollama().generate("x"))).kind, "unavailable");
    llm.behaviour = () => ({ hangUp: true });
    assert.equal((await failure(ollama().generate("x"))).kind, "unavailable");
  });

  test("a 200 that is not JSON, or has no text, is a bad response", async () => {
    llm.behaviour = () => ({ rawBody: "<html>gateway</html>" });
    const notJson = await failure(ollama().generate("x"));
    assert.equal(notJson.kind, "bad_response");
    assert.match(notJson.message, /not JSON/);
    llm.behaviour = () => ({ omitText: true });
    const noText = await failure(ollama().generate("x"));
    assert.equal(noText.kind, "bad_response");
    assert.match(noText.message, /without a "response" string/);
    const noContent = await failure(client({ LLM_PROVIDER: "openai", LLM_BASE_URL: llm.openaiBaseUrl }).generate("x"));
    assert.match(noContent.message, /choices\[0\]\.message\.content/);
  });

  test("a response over LLM_MAX_RESPONSE_BYTES is refused with a clear error", async () => {
    llm.behaviour = () => ({ text: "a".repeat(200_000) });
    const e = await failure(client({ LLM_BASE_URL: llm.origin, LLM_MAX_RESPONSE_BYTES: "100000" }).generate("x"));
    assert.equal(e.kind, "prompt");
    assert.match(e.message, /exceeded LLM_MAX_RESPONSE_BYTES \(100000 bytes\)/);
  });

  test("an aborted call is reported as aborted", async () => {
    llm.behaviour = () => ({ delayMs: 2000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    assert.equal((await failure(ollama().generate("x", controller.signal))).kind, "aborted");
  });

  test("the health probe tells a live server from a dead one", async () => {
    assert.equal(await ollama().isReachable(), true);
    assert.equal(await client({ LLM_PROVIDER: "openai", LLM_BASE_URL: llm.openaiBaseUrl }).isReachable(), true);
    assert.equal(await client({ LLM_BASE_URL: "http://127.0.0.1:1" }).isReachable(), false);
  });
});
