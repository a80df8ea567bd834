/**
 * No silently truncated prompt: a prompt the server trimmed or refused never
 * ends listo. The rules on their own first (each server's words, Ollama's
 * counts, a prompt cache), then with a real worker against the test LLM
 * server acting as each server does.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { contextRefusal, trimmedPrompt } from "../src/llm/truncation";
import { testBed } from "./support/bed";
import { insert } from "./support/db";
import { eventually, testEnv } from "./support/worker";

describe("trimmedPrompt: did the server read the whole prompt?", () => {
  const cases: [string, Parameters<typeof trimmedPrompt>[0], boolean][] = [
    ["Ollama trimmed it to its num_ctx (4096) and says it read 4096", { promptTokens: 15_200, reportedPromptTokens: 4096, contextTokens: 4096 }, true],
    ["the same, with the context unknown", { promptTokens: 15_200, reportedPromptTokens: 4096, contextTokens: null }, true],
    ["a model that keeps num_ctx/2 + 2", { promptTokens: 3_500, reportedPromptTokens: 2050, contextTokens: 4096 }, true],
    ["a prompt that cannot fit, whatever the server says it read", { promptTokens: 20_000, reportedPromptTokens: null, contextTokens: 4096 }, true],
    ["a prompt cache hit (Ollama before 0.4 reports what it had to read: 1 token)", { promptTokens: 3_000, reportedPromptTokens: 1, contextTokens: 4096 }, false],
    ["the same cache hit, the context unknown", { promptTokens: 3_000, reportedPromptTokens: 1, contextTokens: null }, false],
    ["the server's tokenizer is leaner than js-tiktoken's (80 %)", { promptTokens: 10_000, reportedPromptTokens: 8_000, contextTokens: 32_768 }, false],
    ["the server read more than we count (template, system prompt)", { promptTokens: 500, reportedPromptTokens: 540, contextTokens: 4096 }, false],
    ["a server that says nothing, and a prompt that fits", { promptTokens: 500, reportedPromptTokens: null, contextTokens: 4096 }, false],
  ];
  for (const [name, facts, trimmed] of cases) {
    test(name, () => assert.equal(trimmedPrompt(facts), trimmed));
  }
});

describe("contextRefusal: each server's words for a prompt longer than its context", () => {
  const cases: [string, string, unknown, { promptTokens: number | null; contextTokens: number | null } | null][] = [
    [
      "vLLM (0.10.1 and later)",
      "You passed 5000 input tokens and requested 256 output tokens. However, the model's context length is only 4096 tokens, resulting in a maximum input length of 3840 tokens. Please reduce the length of the input prompt.",
      { error: { message: "…", type: "BadRequestError", param: "input_tokens", code: 400 } },
      { promptTokens: 5000, contextTokens: 4096 },
    ],
    [
      "vLLM (older, flat body)",
      "This model's maximum context length is 4096 tokens. However, you requested 5256 tokens (5000 in the messages, 256 in the completion). Please reduce the length of the messages or completion.",
      { object: "error", type: "BadRequestError", code: 400 },
      { promptTokens: 5000, contextTokens: 4096 },
    ],
    [
      "llama.cpp's llama-server (b7486 and later)",
      "request (5000 tokens) exceeds the available context size (4096 tokens), try increasing it",
      { error: { code: 400, message: "…", type: "exceed_context_size_error", n_prompt_tokens: 5000, n_ctx: 4096 } },
      { promptTokens: 5000, contextTokens: 4096 },
    ],
    ["TGI (422)", "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 5000 `inputs` tokens and 256 `max_new_tokens`", null, { promptTokens: 5000, contextTokens: 4096 }],
    ["LM Studio (on a 200)", "Input does not fit in context length. The input has 31430 tokens, but the context length only supports 30000 tokens.", null, { promptTokens: 31430, contextTokens: 30000 }],
    ["Ollama with truncate: false", "the input length exceeds the context length", null, { promptTokens: null, contextTokens: null }],
    ["an unrelated 400", "invalid character 'x' looking for beginning of value", { error: "invalid character" }, null],
  ];
  for (const [name, message, body, expected] of cases) {
    test(name, () => assert.deepEqual(contextRefusal(message, body), expected));
  }
});

describe("with a real worker", () => {
  const bed = testBed();
  // About 15,000 tokens of prose: far more than a 4096-token context.
  const LONG_PROMPT = "Resume este capítulo de la tesis, con sus fechas, sus nombres y sus conclusiones principales. ".repeat(650).slice(0, 60_000);

  async function outcome(id: number) {
    return eventually(async () => {
      const { rows } = await bed.db.pool.query(
        `SELECT a.estatus, a.respuesta, o.finish_reason, o.error_message, o.attempts FROM fila_llm_anahuac a
           LEFT JOIN fila_llm_outcome o ON o.prompt_id = a.id WHERE a.id = $1 AND a.estatus <> 'pendiente'`,
        [id],
      );
      return rows[0];
    }, 20_000, `prompt ${id} to finish`);
  }

  test("an Ollama that trims silently to 4096 tokens: the 60,000-character prompt ends error, truncated_input, with both sizes and the fix", async () => {
    bed.llm.ollamaDefaultContext = 4096;
    bed.llm.ollamaTruncation = "trim";
    await bed.start(testEnv(bed.llm.origin));
    const [id, short] = await insert(bed.db.pool, LONG_PROMPT, "una pregunta corta");
    const row = await outcome(id);
    assert.equal(row.estatus, "error");
    assert.equal(row.finish_reason, "truncated_input");
    assert.match(row.error_message, /^the server trimmed the prompt: its context is 4,096 tokens and the prompt has about [\d,]+: set LLM_CONTEXT_TOKENS or shorten the prompt$/);
    assert.equal(row.attempts, 1);
    assert.equal(bed.llm.generateRequests.filter((r) => r.prompt === LONG_PROMPT).length, 1, "not retried");
    assert.equal((await outcome(short)).estatus, "listo", "a prompt that fits is answered");
  });

  test("with LLM_CONTEXT_TOKENS=65536 the same prompt is listo, and every request carried num_ctx 65536", async () => {
    bed.llm.ollamaDefaultContext = 4096;
    bed.llm.ollamaTruncation = "trim";
    await bed.start(testEnv(bed.llm.origin, { LLM_CONTEXT_TOKENS: "65536" }));
    const [id] = await insert(bed.db.pool, LONG_PROMPT);
    const row = await outcome(id);
    assert.equal(row.estatus, "listo", row.error_message);
    assert.ok(bed.llm.posts.length >= 2, "the load and the prompt");
    for (const post of bed.llm.posts) assert.deepEqual(post.body.options, { num_ctx: 65536 }, `${post.kind} carried num_ctx`);
  });

  test("an Ollama that keeps num_ctx/2 + 2 tokens: truncated_input too", async () => {
    bed.llm.ollamaDefaultContext = 4096;
    bed.llm.ollamaTruncation = "trim_half";
    await bed.start(testEnv(bed.llm.origin));
    const [id] = await insert(bed.db.pool, LONG_PROMPT.slice(0, 24_000));
    const row = await outcome(id);
    assert.deepEqual([row.estatus, row.finish_reason], ["error", "truncated_input"]);
    assert.match(row.error_message, /it read 2,050/);
  });

  test("an Ollama that honours truncate: false answers 400, which is truncated_input with its words", async () => {
    bed.llm.ollamaDefaultContext = 4096;
    bed.llm.ollamaTruncation = "honour_truncate";
    await bed.start(testEnv(bed.llm.origin));
    const [id] = await insert(bed.db.pool, LONG_PROMPT);
    const row = await outcome(id);
    assert.deepEqual([row.estatus, row.finish_reason], ["error", "truncated_input"]);
    assert.equal(
      row.error_message,
      "the server refused the prompt: the prompt is longer than its context (the input length exceeds the context length): set LLM_CONTEXT_TOKENS or shorten the prompt",
    );
    assert.equal(bed.llm.generateRequests[0].body.truncate, false);
  });

  test("a prompt cache hit (a repeated prompt reporting 1 token read) is not mistaken for a trim", async () => {
    bed.llm.ollamaDefaultContext = 8192;
    bed.llm.promptCache = true;
    await bed.start(testEnv(bed.llm.origin));
    const prompt = LONG_PROMPT.slice(0, 12_000);
    const ids = await insert(bed.db.pool, prompt, prompt);
    assert.deepEqual([(await outcome(ids[0])).estatus, (await outcome(ids[1])).estatus], ["listo", "listo"]);
    const { rows } = await bed.db.pool.query("SELECT server_tokens_in FROM fila_llm_outcome WHERE prompt_id = ANY($1) ORDER BY prompt_id", [ids]);
    assert.deepEqual(rows.map((r) => r.server_tokens_in), [3000, 1], "the second one really was a cache hit");
  });

  for (const [server, status, body] of [
    ["vLLM", 400, { error: { message: "You passed 15000 input tokens and requested 256 output tokens. However, the model's context length is only 4096 tokens, resulting in a maximum input length of 3840 tokens. Please reduce the length of the input prompt.", type: "BadRequestError", param: "input_tokens", code: 400 } }],
    ["llama.cpp", 400, { error: { code: 400, message: "request (15000 tokens) exceeds the available context size (4096 tokens), try increasing it", type: "exceed_context_size_error", n_prompt_tokens: 15000, n_ctx: 4096 } }],
  ] as const) {
    test(`${server}'s 400 for a prompt longer than its context is truncated_input, with both sizes`, async () => {
      bed.llm.behaviour = () => ({ status, rawBody: JSON.stringify(body) });
      await bed.start(testEnv(bed.llm.openaiBaseUrl, { LLM_PROVIDER: "openai" }));
      const [id] = await insert(bed.db.pool, LONG_PROMPT);
      const row = await outcome(id);
      assert.deepEqual([row.estatus, row.finish_reason], ["error", "truncated_input"]);
      assert.match(row.error_message, /^the server refused the prompt: its context is 4,096 tokens and the prompt has 15,000 \(.+\): set LLM_CONTEXT_TOKENS or shorten the prompt$/);
    });
  }

  test("LM Studio's 200 with an error event is read as that error: truncated_input", async () => {
    bed.llm.behaviour = () => ({
      rawBody:
        'event: error\ndata: {"error":{"message":"Input does not fit in context length. The input has 15000 tokens, but the context length only supports 4096 tokens."}}\n\n',
    });
    await bed.start(testEnv(bed.llm.openaiBaseUrl, { LLM_PROVIDER: "openai" }));
    const [id] = await insert(bed.db.pool, LONG_PROMPT);
    const row = await outcome(id);
    assert.deepEqual([row.estatus, row.finish_reason], ["error", "truncated_input"]);
    assert.match(row.error_message, /its context is 4,096 tokens and the prompt has 15,000/);
  });
});
