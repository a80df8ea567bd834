/**
 * The two wire formats: Ollama's native /api/generate and OpenAI-compatible
 * /chat/completions (vLLM, llama-server, LM Studio, TGI, Ollama's /v1).
 */
import type { Config } from "../config";
import { LlmError } from "./errors";

export interface LlmAnswer {
  text: string;
  /** The model name the server reports, else the one we asked for. */
  model: string;
  /** Token counts as the server itself reports them, when it does. */
  serverTokensIn: number | null;
  serverTokensOut: number | null;
}

export interface Protocol {
  /** Path appended to LLM_BASE_URL's path. */
  generatePath: string;
  /** A cheap GET that tells whether the server is up. */
  healthPath: string;
  requestBody(prompt: string): unknown;
  parseAnswer(body: unknown): LlmAnswer;
  /** The human message inside an error body, if the server sent one. */
  errorMessage(body: unknown): string | null;
}

type LlmSettings = Config["llm"];

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// fila_llm_outcome's token columns are INT; a bigger count from an odd server
// would make the answer's write fail every time it is retried.
const MAX_INT = 2_147_483_647;

function count(value: unknown): number | null {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_INT ? value : null;
}

function missingText(what: string): LlmError {
  return new LlmError("bad_response", `the LLM answered 200 without ${what}`);
}

export function ollamaProtocol(settings: LlmSettings): Protocol {
  return {
    generatePath: "/api/generate",
    healthPath: "/api/version",
    requestBody: (prompt) => {
      const options: Record<string, number> = {};
      if (settings.temperature !== null) options.temperature = settings.temperature;
      if (settings.maxTokens !== null) options.num_predict = settings.maxTokens;
      return {
        model: settings.model,
        prompt,
        stream: false,
        ...(settings.systemPrompt !== null ? { system: settings.systemPrompt } : {}),
        ...(Object.keys(options).length > 0 ? { options } : {}),
      };
    },
    parseAnswer: (body) => {
      if (!isObject(body) || typeof body.response !== "string") throw missingText('a "response" string');
      return {
        text: body.response,
        model: typeof body.model === "string" ? body.model : settings.model,
        serverTokensIn: count(body.prompt_eval_count),
        serverTokensOut: count(body.eval_count),
      };
    },
    errorMessage: (body) => (isObject(body) && typeof body.error === "string" ? body.error : null),
  };
}

export function openaiProtocol(settings: LlmSettings): Protocol {
  return {
    generatePath: "/chat/completions",
    healthPath: "/models",
    requestBody: (prompt) => ({
      model: settings.model,
      messages: [
        ...(settings.systemPrompt !== null ? [{ role: "system", content: settings.systemPrompt }] : []),
        { role: "user", content: prompt },
      ],
      stream: false,
      ...(settings.temperature !== null ? { temperature: settings.temperature } : {}),
      ...(settings.maxTokens !== null ? { max_tokens: settings.maxTokens } : {}),
    }),
    parseAnswer: (body) => {
      const choice = isObject(body) && Array.isArray(body.choices) ? body.choices[0] : undefined;
      const message = isObject(choice) ? choice.message : undefined;
      if (!isObject(body) || !isObject(message) || typeof message.content !== "string") {
        throw missingText("choices[0].message.content");
      }
      const usage = isObject(body.usage) ? body.usage : {};
      return {
        text: message.content,
        model: typeof body.model === "string" ? body.model : settings.model,
        serverTokensIn: count(usage.prompt_tokens),
        serverTokensOut: count(usage.completion_tokens),
      };
    },
    errorMessage: (body) => {
      if (!isObject(body)) return null;
      if (isObject(body.error) && typeof body.error.message === "string") return body.error.message;
      if (typeof body.error === "string") return body.error;
      return typeof body.message === "string" ? body.message : null;
    },
  };
}
