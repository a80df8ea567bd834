/**
 * The two wire formats, always streamed: Ollama's native /api/generate
 * (NDJSON, the last line `done: true` with done_reason and the counts) and
 * OpenAI-compatible /chat/completions (server-sent events of
 * chat.completion.chunk, a usage chunk, `data: [DONE]`), as vLLM, llama.cpp's
 * llama-server, LM Studio, TGI and Ollama's /v1 send them.
 *
 * A server may send an error inside a stream whose status was already 200
 * (Ollama: an `{"error": …}` line; llama-server and vLLM: a `data:` event
 * with `error`; LM Studio: `event: error`), and may end a stream without its
 * final event (Ollama's own repeat abort, a crash, a cut connection). Both
 * are failures: an answer is complete only once its final event has come.
 */
import type { Config } from "../config";
import { LlmError } from "./errors";
import { LineSplitter, SseParser } from "./framing";
import { contextRefusal, refusalMessage } from "./truncation";

/** A complete answer. */
export interface LlmAnswer {
  text: string;
  /** The model name the server reports, else the one we asked for. */
  model: string;
  /** How the generation ended, as the server says: "stop", "length" (cut short by a token limit), … */
  finishReason: string | null;
  /** Token counts as the server itself reports them, when it does. */
  serverTokensIn: number | null;
  serverTokensOut: number | null;
  /** Where the server's time went, when it says (Ollama's durations, llama.cpp's timings). */
  timings: ServerTimings;
}

/** Seconds, as the server measured them; null where it does not say. */
export interface ServerTimings {
  /** Loading the model for this request (Ollama). */
  loadSeconds: number | null;
  /** Reading the prompt. */
  promptEvalSeconds: number | null;
  /** Generating the answer. */
  evalSeconds: number | null;
}

const NO_TIMINGS: ServerTimings = { loadSeconds: null, promptEvalSeconds: null, evalSeconds: null };

/** What one streamed event added to the answer. */
export interface Delta {
  text: string;
  /** A thinking model's reasoning, streamed apart from the answer (not stored). */
  reasoning: string;
}

/** The summary a stream's final event carries. */
export type Final = Omit<LlmAnswer, "text">;

export interface StreamReader {
  /** Body bytes in; the deltas they complete. Throws LlmError for an error sent inside the stream. */
  push(chunk: Buffer): Delta[];
  /** The body ended: the deltas of a last line or event that had no line end. */
  end(): Delta[];
  /** After end(): the final event's summary; throws if it never came. */
  final(): Final;
}

export interface Protocol {
  /** Path appended to LLM_BASE_URL's path. */
  generatePath: string;
  /** A cheap GET that tells whether the server is up. */
  healthPath: string;
  /** A GET that lists the models the server has. */
  modelsPath: string;
  /** The model names in the reply to modelsPath. */
  modelNames(body: unknown): string[];
  /** True if `listed` (a name the server lists) is the model we ask for. */
  isOurModel(listed: string): boolean;
  /** Ollama only: the bodies that load the model (kept for LLM_KEEP_ALIVE) and unload it; null elsewhere. */
  loadBody: unknown | null;
  unloadBody: unknown | null;
  /** Ollama only: a GET that lists the loaded models with their context length; null elsewhere. */
  runningPath: string | null;
  /** The context length in force for our model, in the reply to runningPath. */
  runningContext(body: unknown): number | null;
  requestBody(prompt: string): unknown;
  /** Reads a streamed 2xx body; `maxLineBytes` bounds one line or event. */
  streamReader(maxLineBytes: number): StreamReader;
  /** Reads a 2xx body that came whole, as JSON, from a server that did not stream. */
  parseWhole(body: unknown): LlmAnswer;
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

function text(value: unknown): string {
  return typeof value === "string" ? value : "";
}

function seconds(nanoseconds: unknown): number | null {
  return typeof nanoseconds === "number" && Number.isFinite(nanoseconds) && nanoseconds >= 0 ? nanoseconds / 1e9 : null;
}

function milliseconds(ms: unknown): number | null {
  return typeof ms === "number" && Number.isFinite(ms) && ms >= 0 ? ms / 1000 : null;
}

/** llama.cpp's `timings` object (prompt_ms, predicted_ms), on the last chunk or a whole reply. */
function llamaCppTimings(value: unknown): ServerTimings {
  if (!isObject(value)) return NO_TIMINGS;
  return { loadSeconds: null, promptEvalSeconds: milliseconds(value.prompt_ms), evalSeconds: milliseconds(value.predicted_ms) };
}

/** push() and end() of a StreamReader, from its framing (lines or events) and what it makes of one. */
function readerOf<T>(split: (chunk: Buffer) => T[], rest: () => T[], read: (item: T, deltas: Delta[]) => void): Pick<StreamReader, "push" | "end"> {
  const deltasOf = (items: T[]) => {
    const deltas: Delta[] = [];
    for (const item of items) read(item, deltas);
    return deltas;
  };
  return { push: (chunk) => deltasOf(split(chunk)), end: () => deltasOf(rest()) };
}

function parseJson(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    throw new LlmError("bad_response", `the LLM sent a line that is not JSON inside its answer (${line.length} chars)`);
  }
}

function errorInStream(message: string): LlmError {
  // LM Studio refuses a prompt longer than its context this way, on a 200.
  const refusal = contextRefusal(message, null);
  if (refusal) return new LlmError("truncated_input", refusalMessage(refusal, message));
  return new LlmError("unavailable", `the LLM reported an error while answering: ${message}`);
}

function cutBeforeTheEnd(): LlmError {
  return new LlmError("unavailable", "the LLM's answer stopped before its end (no final event; the server may have crashed or cut the connection)");
}

/** The message of an error body in any of the shapes servers use, or null. */
function anyErrorMessage(body: unknown): string | null {
  if (!isObject(body)) return null;
  if (isObject(body.error) && typeof body.error.message === "string") return body.error.message;
  if (typeof body.error === "string") return body.error;
  // vLLM before 0.10.1: a flat {"object": "error", "message": …}.
  if (body.object === "error" && typeof body.message === "string") return body.message;
  return null;
}

export function ollamaProtocol(settings: LlmSettings): Protocol {
  const final = (line: Record<string, unknown>): Final => ({
    model: typeof line.model === "string" && line.model !== "" ? line.model : settings.model,
    finishReason: typeof line.done_reason === "string" && line.done_reason !== "" ? line.done_reason : null,
    serverTokensIn: count(line.prompt_eval_count),
    serverTokensOut: count(line.eval_count),
    timings: {
      loadSeconds: seconds(line.load_duration),
      promptEvalSeconds: seconds(line.prompt_eval_duration),
      evalSeconds: seconds(line.eval_duration),
    },
  });
  // num_ctx the same on every request: a change forces Ollama to reload the model.
  const contextOption: Record<string, number> = settings.contextTokens !== null ? { num_ctx: settings.contextTokens } : {};
  const sameOnEveryRequest = {
    model: settings.model,
    keep_alive: settings.keepAliveSeconds,
    ...(settings.contextTokens !== null ? { options: contextOption } : {}),
  };
  return {
    generatePath: "/api/generate",
    healthPath: "/api/version",
    modelsPath: "/api/tags",
    modelNames: (body) =>
      isObject(body) && Array.isArray(body.models)
        ? body.models.flatMap((m) => (isObject(m) && typeof m.name === "string" ? [m.name] : []))
        : [],
    // Ollama reads a name without a tag as name:latest.
    isOurModel: (listed) => listed === settings.model || (!settings.model.includes(":") && listed === `${settings.model}:latest`),
    loadBody: sameOnEveryRequest,
    unloadBody: { model: settings.model, keep_alive: 0 },
    runningPath: "/api/ps",
    runningContext: (body) => {
      if (!isObject(body) || !Array.isArray(body.models)) return null;
      const ours = body.models.find(
        (m) => isObject(m) && (m.name === settings.model || m.model === settings.model || m.name === `${settings.model}:latest`),
      );
      return isObject(ours) ? count(ours.context_length) : null;
    },
    requestBody: (prompt) => {
      const options: Record<string, number> = { ...contextOption };
      if (settings.temperature !== null) options.temperature = settings.temperature;
      if (settings.maxTokens !== null) options.num_predict = settings.maxTokens;
      return {
        model: settings.model,
        prompt,
        stream: true,
        keep_alive: settings.keepAliveSeconds,
        // Refuse, rather than trim, a prompt longer than the context (Ollama 0.12.6 and later;
        // older servers ignore it, and the worker then detects the trim from prompt_eval_count).
        truncate: false,
        ...(settings.systemPrompt !== null ? { system: settings.systemPrompt } : {}),
        ...(Object.keys(options).length > 0 ? { options } : {}),
      };
    },
    streamReader(maxLineBytes) {
      const lines = new LineSplitter(maxLineBytes);
      let done: Final | null = null;
      const read = (line: string, deltas: Delta[]) => {
        if (line.trim() === "") return;
        const value = parseJson(line);
        if (!isObject(value)) throw new LlmError("bad_response", "the LLM sent a line that is not a JSON object inside its answer");
        if (typeof value.error === "string") throw errorInStream(value.error);
        if (typeof value.response !== "string") throw new LlmError("bad_response", 'the LLM sent a line without a "response" string');
        deltas.push({ text: value.response, reasoning: text(value.thinking) });
        if (value.done === true) done = final(value);
      };
      return {
        ...readerOf(
          (chunk) => lines.push(chunk),
          () => {
            const rest = lines.end();
            return rest === null ? [] : [rest];
          },
          read,
        ),
        final() {
          if (done === null) throw cutBeforeTheEnd();
          return done;
        },
      };
    },
    parseWhole: (body) => {
      const message = anyErrorMessage(body);
      if (message !== null) throw errorInStream(message);
      if (!isObject(body) || typeof body.response !== "string") throw new LlmError("bad_response", 'the LLM answered 200 without a "response" string');
      if (body.done !== true) throw cutBeforeTheEnd();
      return { text: body.response, ...final(body) };
    },
    errorMessage: anyErrorMessage,
  };
}

export function openaiProtocol(settings: LlmSettings): Protocol {
  return {
    generatePath: "/chat/completions",
    healthPath: "/models",
    modelsPath: "/models",
    modelNames: (body) =>
      isObject(body) && Array.isArray(body.data) ? body.data.flatMap((m) => (isObject(m) && typeof m.id === "string" ? [m.id] : [])) : [],
    isOurModel: (listed) => listed === settings.model,
    loadBody: null,
    unloadBody: null,
    runningPath: null,
    runningContext: () => null,
    requestBody: (prompt) => ({
      model: settings.model,
      messages: [
        ...(settings.systemPrompt !== null ? [{ role: "system", content: settings.systemPrompt }] : []),
        { role: "user", content: prompt },
      ],
      stream: true,
      // The usage chunk carries the server's own token counts; a server that sends none is fine.
      stream_options: { include_usage: true },
      ...(settings.temperature !== null ? { temperature: settings.temperature } : {}),
      ...(settings.maxTokens !== null ? { max_tokens: settings.maxTokens } : {}),
    }),
    streamReader(maxLineBytes) {
      const events = new SseParser(maxLineBytes);
      const summary: Final = { model: settings.model, finishReason: null, serverTokensIn: null, serverTokensOut: null, timings: NO_TIMINGS };
      let finished = false;
      const read = (event: { event: string | null; data: string }, deltas: Delta[]) => {
        if (event.data === "[DONE]") return;
        const value = event.data.trim() === "" ? {} : parseJson(event.data);
        const message = anyErrorMessage(value);
        if (event.event === "error" || message !== null) throw errorInStream(message ?? event.data.slice(0, 500));
        if (!isObject(value)) return;
        if (typeof value.model === "string" && value.model !== "") summary.model = value.model;
        if (isObject(value.usage)) {
          summary.serverTokensIn = count(value.usage.prompt_tokens) ?? summary.serverTokensIn;
          summary.serverTokensOut = count(value.usage.completion_tokens) ?? summary.serverTokensOut;
        }
        if (isObject(value.timings)) summary.timings = llamaCppTimings(value.timings);
        const choice = Array.isArray(value.choices) ? value.choices[0] : undefined;
        if (!isObject(choice)) return;
        const delta = isObject(choice.delta) ? choice.delta : {};
        deltas.push({ text: text(delta.content), reasoning: text(delta.reasoning_content) || text(delta.reasoning) });
        if (typeof choice.finish_reason === "string" && choice.finish_reason !== "") {
          summary.finishReason = choice.finish_reason;
          finished = true;
        }
      };
      return {
        ...readerOf((chunk) => events.push(chunk), () => events.end(), read),
        final() {
          // [DONE] is not reliable (llama-server leaves it out after an error, Ollama's /v1
          // after a lost one); the finish_reason is what says the answer is whole.
          if (!finished) throw cutBeforeTheEnd();
          return summary;
        },
      };
    },
    parseWhole: (body) => {
      const message = anyErrorMessage(body);
      if (message !== null) throw errorInStream(message);
      const choice = isObject(body) && Array.isArray(body.choices) ? body.choices[0] : undefined;
      const reply = isObject(choice) ? choice.message : undefined;
      if (!isObject(body) || !isObject(choice) || !isObject(reply) || typeof reply.content !== "string") {
        throw new LlmError("bad_response", "the LLM answered 200 without choices[0].message.content");
      }
      const usage = isObject(body.usage) ? body.usage : {};
      return {
        text: reply.content,
        model: typeof body.model === "string" ? body.model : settings.model,
        finishReason: typeof choice.finish_reason === "string" ? choice.finish_reason : null,
        serverTokensIn: count(usage.prompt_tokens),
        serverTokensOut: count(usage.completion_tokens),
        timings: llamaCppTimings(body.timings),
      };
    },
    errorMessage: anyErrorMessage,
  };
}
