/**
 * The HTTP client for the LLM. Every call streams, and is watched while it
 * streams, so that no runaway generation can hold the GPU for long:
 *
 * - LLM_TIMEOUT_SECONDS bounds the whole call. A model can take minutes to
 *   load or to read a long prompt, and sends nothing meanwhile, so that is
 *   the only bound on the wait for the first token.
 * - LLM_STALL_SECONDS: a stream that has started and then sends nothing for
 *   that long is cut.
 * - The repetition guard cuts an answer whose tail has become a loop.
 * - LLM_MAX_RESPONSE_BYTES cuts an answer that grows past it: memory stays
 *   bounded, nothing is buffered but the answer itself.
 * - The server is probed every few seconds during the call, on a connection
 *   of its own; if it stops answering (llama-server after SIGTERM keeps the
 *   call open, silent, for ever) the call is cut as an outage.
 *
 * What each cut means for the prompt is src/failure_policy.ts's to decide.
 */
import { Pool } from "undici";
import type { Config } from "../config";
import { scrub } from "../log";
import { LlmError, kindForStatus, parseRetryAfter } from "./errors";
import { ollamaProtocol, openaiProtocol, type Delta, type LlmAnswer, type Protocol } from "./protocols";
import { copiesAtEnd, RepetitionGuard, type Loop } from "./repetition_guard";
import { contextRefusal, refusalMessage } from "./truncation";

export type { LlmAnswer } from "./protocols";
export { LlmError } from "./errors";

export interface LlmClient {
  /** Sends one prompt and streams the whole answer. `signal` cancels it. */
  generate(prompt: string, signal?: AbortSignal): Promise<LlmAnswer>;
  /** True if the server answers a cheap GET with anything below 500. */
  isReachable(): Promise<boolean>;
  /** True if the server loads and unloads models on request (Ollama); the others keep theirs loaded. */
  readonly loads: boolean;
  /** Loads the model (kept for LLM_KEEP_ALIVE); resolves with the seconds it took. Throws LlmError. */
  load(): Promise<number>;
  /** Unloads the model. Throws LlmError. */
  unload(): Promise<void>;
  /** The models the server lists, or null if it does not answer. */
  listModels(): Promise<string[] | null>;
  /** True if a name the server lists is LLM_MODEL. */
  isOurModel(listed: string): boolean;
  /** The context length in force for the loaded model, where the server says (Ollama's /api/ps). */
  runningContext(): Promise<number | null>;
  close(): Promise<void>;
}

// A health probe must answer fast; a server that needs longer is as good as down.
const PROBE_TIMEOUT_MS = 5_000;
// How often the server is probed while a call waits or streams.
const PROBE_EVERY_MS = 5_000;
// A server that fails its probe this long during a call is gone (or LLM_STALL_SECONDS, if shorter).
const SERVER_LOST_MAX_SECONDS = 30;
// Error messages are stored in the database; a whole HTML error page is noise.
const MAX_ERROR_MESSAGE_CHARS = 500;
// The longest repeated block a message quotes in full.
const QUOTED_BLOCK_CHARS = 60;

/** Builds the client of one server (one of LLM_BASE_URL's), for LLM_PROVIDER, with its own connection pools. */
export function createLlmClient(settings: Config["llm"], baseUrl: string): LlmClient {
  const protocol: Protocol = settings.provider === "ollama" ? ollamaProtocol(settings) : openaiProtocol(settings);
  const base = new URL(baseUrl);
  const basePath = base.pathname.replace(/\/+$/, "");
  const timeoutMs = settings.timeoutSeconds * 1000;
  const calls = new Pool(base.origin, {
    // A server gets at most LLM_CONCURRENCY_PER_SERVER calls at once, each on a kept-alive connection.
    connections: settings.concurrencyPerServer,
    // undici's own 300 s header/body timeouts would cut a long generation
    // short; the call's own guards (below) decide instead.
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    keepAliveTimeout: 60_000,
    connect: { timeout: 10_000 },
  });
  // The probe's own connection: it must get through while a call holds the other one.
  const probes = new Pool(base.origin, {
    connections: 1,
    headersTimeout: PROBE_TIMEOUT_MS,
    bodyTimeout: PROBE_TIMEOUT_MS,
    connect: { timeout: PROBE_TIMEOUT_MS },
  });
  const headers: Record<string, string> = { "content-type": "application/json", accept: "application/x-ndjson, text/event-stream, application/json" };
  if (settings.apiKey !== null) headers.authorization = `Bearer ${settings.apiKey}`;
  const tooLarge = () =>
    new LlmError("too_large", `the LLM's answer exceeded LLM_MAX_RESPONSE_BYTES (${settings.maxResponseBytes} bytes); raise it or set LLM_MAX_TOKENS`);

  async function readWhole(body: AsyncIterable<Buffer> & { destroy(err?: Error): unknown }): Promise<string> {
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of body) {
      bytes += chunk.length;
      if (bytes > settings.maxResponseBytes) {
        body.destroy();
        throw tooLarge();
      }
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString("utf8");
  }

  /** The error an HTTP error status carries, with the server's message. */
  function httpError(status: number, body: unknown, raw: string, retryAfter: string | string[] | undefined): LlmError {
    const detail = scrub(protocol.errorMessage(body) ?? (raw.trim() || "(empty body)"));
    const kind = kindForStatus(status);
    const refusal = kind === "rejected" ? contextRefusal(detail, body) : null;
    if (refusal) return new LlmError("truncated_input", refusalMessage(refusal, detail).slice(0, MAX_ERROR_MESSAGE_CHARS), status);
    return new LlmError(kind, `the LLM answered HTTP ${status}: ${detail}`.slice(0, MAX_ERROR_MESSAGE_CHARS), status, parseRetryAfter(retryAfter));
  }

  /** A POST of a whole JSON body and its whole JSON reply (the model's load and unload). */
  async function postWhole(body: unknown): Promise<unknown> {
    const response = await calls.request({
      path: basePath + protocol.generatePath,
      method: "POST",
      headers,
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const { raw, parsed } = await readJson(response.body);
    if (response.statusCode < 200 || response.statusCode >= 300) throw httpError(response.statusCode, parsed, raw, response.headers["retry-after"]);
    const message = protocol.errorMessage(parsed);
    if (message !== null) throw new LlmError("config", `the LLM answered 200 with an error: ${scrub(message)}`.slice(0, MAX_ERROR_MESSAGE_CHARS));
    return parsed;
  }

  /** A GET whose JSON reply is read whole; null if the server does not answer it. */
  async function getJson(path: string): Promise<unknown | null> {
    try {
      const response = await probes.request({ path: basePath + path, method: "GET", headers, reset: true, signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
      const { parsed } = await readJson(response.body);
      return response.statusCode >= 200 && response.statusCode < 300 && parsed !== undefined ? parsed : null;
    } catch {
      return null;
    }
  }

  /** Network failures of the model's load and unload, sorted like a call's. */
  function adminError(error: unknown): LlmError {
    if (error instanceof LlmError) return error;
    const e = error as { code?: string; message?: string; name?: string };
    if (e.name === "TimeoutError") return new LlmError("unavailable", `the LLM did not answer within LLM_TIMEOUT_SECONDS (${settings.timeoutSeconds} s)`);
    return new LlmError("unavailable", `cannot reach the LLM at ${base.origin}: ${`${e.code ?? e.name ?? "error"} ${e.message ?? ""}`.trim()}`);
  }

  /** A whole body, and its JSON value (undefined if it is not JSON). */
  async function readJson(body: AsyncIterable<Buffer> & { destroy(err?: Error): unknown }): Promise<{ raw: string; parsed: unknown }> {
    const raw = await readWhole(body);
    try {
      return { raw, parsed: JSON.parse(raw) };
    } catch {
      return { raw, parsed: undefined };
    }
  }

  async function isReachable(): Promise<boolean> {
    try {
      const response = await probes.request({
        path: basePath + protocol.healthPath,
        method: "GET",
        headers,
        // A new connection each time: a server shutting down (llama-server
        // after SIGTERM) may still answer on an old kept-alive one while it
        // refuses every new one, which is what the next prompt would get.
        reset: true,
        signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
      });
      await response.body.dump();
      return response.statusCode < 500;
    } catch {
      return false;
    }
  }

  async function generate(prompt: string, signal?: AbortSignal): Promise<LlmAnswer> {
    const watch = new CallWatch(settings, isReachable, signal);
    let text = "";
    try {
      const response = await calls.request({
        path: basePath + protocol.generatePath,
        method: "POST",
        headers,
        body: JSON.stringify(protocol.requestBody(prompt)),
        signal: watch.signal,
      });
      const status = response.statusCode;
      const contentType = String(response.headers["content-type"] ?? "");
      if (status < 200 || status >= 300 || contentType.startsWith("application/json")) {
        const declared = Number(response.headers["content-length"]);
        if (Number.isFinite(declared) && declared > settings.maxResponseBytes) {
          response.body.destroy();
          throw tooLarge();
        }
        const { raw, parsed: body } = await readJson(response.body);
        if (status < 200 || status >= 300) throw httpError(status, body, raw, response.headers["retry-after"]);
        if (body === undefined) throw new LlmError("bad_response", `the LLM answered HTTP ${status} with a body that is not JSON (${raw.length} chars)`, status);
        // A server that did not stream (or a 200 whose body is an error, as LM Studio sends).
        return protocol.parseWhole(body);
      }

      const reader = protocol.streamReader(settings.maxResponseBytes);
      const guard = settings.repetitionGuard ? new RepetitionGuard() : null;
      const reasoningGuard = settings.repetitionGuard ? new RepetitionGuard() : null;
      let reasoning = "";
      let bytes = 0;
      /** Takes the deltas of one network read: the answer grows, and the guards look at it once. */
      const take = (deltas: Delta[]) => {
        let added = "";
        let addedReasoning = "";
        for (const delta of deltas) {
          if (delta.text === "" && delta.reasoning === "") continue;
          watch.output();
          added += delta.text;
          addedReasoning += delta.reasoning;
        }
        if (added === "" && addedReasoning === "") return;
        text += added;
        reasoning += addedReasoning;
        bytes += Buffer.byteLength(added) + Buffer.byteLength(addedReasoning);
        if (bytes > settings.maxResponseBytes) watch.cut(tooLarge());
        const loop = guard?.push(added) ?? null;
        if (loop) watch.cut(repetitionError(loop, text, watch));
        const reasoningLoop = reasoningGuard?.push(addedReasoning) ?? null;
        if (reasoningLoop) watch.cut(repetitionError(reasoningLoop, reasoning, watch, "reasoning"));
      };
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        take(reader.push(chunk));
        if (watch.cutError) break;
      }
      if (!watch.cutError) take(reader.end());
      if (watch.cutError) throw watch.cutError;
      return { text, ...reader.final() };
    } catch (error) {
      throw watch.describe(error, text, base.origin);
    } finally {
      watch.dispose();
    }
  }

  return {
    generate,
    isReachable,
    loads: protocol.loadBody !== null,
    async load() {
      const started = performance.now();
      try {
        await postWhole(protocol.loadBody);
      } catch (error) {
        throw adminError(error);
      }
      return (performance.now() - started) / 1000;
    },
    async unload() {
      try {
        await postWhole(protocol.unloadBody);
      } catch (error) {
        throw adminError(error);
      }
    },
    async listModels() {
      const body = await getJson(protocol.modelsPath);
      return body === null ? null : protocol.modelNames(body);
    },
    isOurModel: protocol.isOurModel,
    async runningContext() {
      if (protocol.runningPath === null) return null;
      const body = await getJson(protocol.runningPath);
      return body === null ? null : protocol.runningContext(body);
    },
    async close() {
      await Promise.all([calls.close(), probes.close()]);
    },
  };
}

function formatCount(n: number): string {
  return n.toLocaleString("en-US");
}

function repetitionError(loop: Loop, answer: string, watch: CallWatch, what = "answer"): LlmError {
  const block = loop.block.length > QUOTED_BLOCK_CHARS ? `${loop.block.slice(0, QUOTED_BLOCK_CHARS)}…` : loop.block;
  const copies = copiesAtEnd(answer, loop.block.length);
  const blockNote = loop.block.length > QUOTED_BLOCK_CHARS ? ` (a block of ${formatCount(loop.block.length)} characters)` : "";
  return new LlmError(
    "repetition",
    `generation cut: the ${what} repeated ${JSON.stringify(block)}${blockNote} ${formatCount(copies)} times ` +
      `(${formatCount(watch.outputTokens)} tokens in ${watch.elapsedSeconds().toFixed(0)} s)`,
    null,
    null,
    answer,
  );
}

/**
 * The guards of one call: its whole-call timeout, the stall timer, and the
 * server probe while it runs. Any of them, or the caller's signal, cuts the
 * call by aborting `signal`; `cutError` then says why.
 */
class CallWatch {
  private readonly controller = new AbortController();
  private readonly startedMs = Date.now();
  private lastOutputMs = 0;
  private tokens = 0;
  private stallTimer: NodeJS.Timeout | null = null;
  private readonly deadline: NodeJS.Timeout;
  private readonly probeTimer: NodeJS.Timeout;
  private probing = false;
  private unreachableSinceMs: number | null = null;
  private readonly stallMs: number;
  private readonly serverLostMs: number;
  private readonly onCallerAbort = () => this.controller.abort();
  cutError: LlmError | null = null;

  constructor(
    private readonly settings: Config["llm"],
    private readonly isReachable: () => Promise<boolean>,
    private readonly caller?: AbortSignal,
  ) {
    this.stallMs = settings.stallSeconds * 1000;
    this.serverLostMs = Math.min(settings.stallSeconds, SERVER_LOST_MAX_SECONDS) * 1000;
    this.deadline = setTimeout(() => this.timedOut(), settings.timeoutSeconds * 1000);
    // Often enough to see a lost server a few times before giving up on it.
    this.probeTimer = setInterval(() => void this.probe(), Math.min(PROBE_EVERY_MS, this.serverLostMs / 3));
    if (caller?.aborted) this.controller.abort();
    else caller?.addEventListener("abort", this.onCallerAbort, { once: true });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get outputTokens(): number {
    return this.tokens;
  }

  elapsedSeconds(): number {
    return (Date.now() - this.startedMs) / 1000;
  }

  /** A token (or a few) arrived. */
  output(): void {
    this.tokens += 1;
    this.lastOutputMs = Date.now();
    if (this.stallTimer === null) this.armStall(this.stallMs);
  }

  /** Cuts the call for this reason (the first reason wins). */
  cut(error: LlmError): void {
    if (this.cutError !== null) return;
    this.cutError = error;
    this.controller.abort();
  }

  /** The error to throw for whatever ended the call. */
  describe(error: unknown, answer: string, origin: string): LlmError {
    const cut = this.cutError;
    if (cut) {
      // What was generated before the cut, so that an operator can see the loop or the stall.
      return cut.partialAnswer !== null || answer === "" ? cut : new LlmError(cut.kind, cut.message, cut.httpStatus, cut.retryAfterSeconds, answer);
    }
    if (this.caller?.aborted) return new LlmError("aborted", "the LLM call was cancelled");
    if (error instanceof LlmError) return error;
    const e = error as { code?: string; message?: string; name?: string };
    const detail = `${e.code ?? e.name ?? "error"} ${e.message ?? ""}`.trim();
    if (answer !== "" || this.tokens > 0) {
      return new LlmError("unavailable", `the LLM's answer was cut off after ${formatCount(this.tokens)} tokens: ${detail}`, null, null, answer);
    }
    return new LlmError("unavailable", `cannot reach the LLM at ${origin}: ${detail}`);
  }

  dispose(): void {
    clearTimeout(this.deadline);
    clearInterval(this.probeTimer);
    if (this.stallTimer) clearTimeout(this.stallTimer);
    this.caller?.removeEventListener("abort", this.onCallerAbort);
  }

  private timedOut(): void {
    if (this.tokens === 0) {
      // Nothing at all came: a server that is down, or a prompt that takes
      // longer to read than allowed. The failure policy probes to tell which.
      this.cut(new LlmError("unavailable", `the LLM did not answer within LLM_TIMEOUT_SECONDS (${this.settings.timeoutSeconds} s)`));
      return;
    }
    this.cut(
      new LlmError(
        "timeout",
        `generation cut: still generating at LLM_TIMEOUT_SECONDS (${this.settings.timeoutSeconds} s) after ${formatCount(this.tokens)} tokens`,
      ),
    );
  }

  private armStall(ms: number): void {
    this.stallTimer = setTimeout(() => {
      const silentMs = Date.now() - this.lastOutputMs;
      if (silentMs < this.stallMs) return this.armStall(this.stallMs - silentMs);
      this.cut(
        new LlmError(
          "stall",
          `generation cut: no output for ${this.settings.stallSeconds} s after ${formatCount(this.tokens)} tokens (LLM_STALL_SECONDS)`,
        ),
      );
    }, ms);
  }

  private async probe(): Promise<void> {
    if (this.probing || this.cutError) return;
    this.probing = true;
    const startedMs = Date.now();
    try {
      if (await this.isReachable()) {
        this.unreachableSinceMs = null;
        return;
      }
      this.unreachableSinceMs ??= startedMs;
      const downSeconds = Math.round((Date.now() - this.unreachableSinceMs) / 1000);
      if (Date.now() - this.unreachableSinceMs >= this.serverLostMs) {
        this.cut(
          new LlmError("server_lost", `the LLM server stopped answering during the call (its health probe has failed for ${downSeconds} s)`),
        );
      }
    } finally {
      this.probing = false;
    }
  }
}
