/**
 * The HTTP client for the LLM: one undici keep-alive pool for every call,
 * whole-call timeout, bounded response size, and errors sorted by kind.
 */
import { Pool } from "undici";
import type { Config } from "../config";
import { scrub } from "../log";
import { LlmError, kindForStatus, parseRetryAfter } from "./errors";
import { ollamaProtocol, openaiProtocol, type LlmAnswer, type Protocol } from "./protocols";

export type { LlmAnswer } from "./protocols";
export { LlmError } from "./errors";

export interface LlmClient {
  /** Sends one prompt and waits for the whole answer. `signal` cancels it. */
  generate(prompt: string, signal?: AbortSignal): Promise<LlmAnswer>;
  /** True if the server answers a cheap GET with anything below 500. */
  isReachable(): Promise<boolean>;
  close(): Promise<void>;
}

// A health probe must answer fast; a server that needs longer is as good as down.
const PROBE_TIMEOUT_MS = 5_000;
// Error messages are stored in the database; a whole HTML error page is noise.
const MAX_ERROR_MESSAGE_CHARS = 500;

/** Builds the client for LLM_PROVIDER, with its own connection pool. */
export function createLlmClient(settings: Config["llm"]): LlmClient {
  const protocol: Protocol = settings.provider === "ollama" ? ollamaProtocol(settings) : openaiProtocol(settings);
  const base = new URL(settings.baseUrl);
  const basePath = base.pathname.replace(/\/+$/, "");
  const timeoutMs = settings.timeoutSeconds * 1000;
  const pool = new Pool(base.origin, {
    // Prompts go one at a time, and the health probe only runs after a call
    // has ended, so one kept-alive connection serves everything.
    connections: 1,
    // undici's own 300 s header/body timeouts would cut a long generation short.
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    keepAliveTimeout: 60_000,
    connect: { timeout: 10_000 },
  });
  const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json" };
  if (settings.apiKey !== null) headers.authorization = `Bearer ${settings.apiKey}`;

  async function readLimited(body: AsyncIterable<Buffer> & { destroy(err?: Error): unknown }): Promise<string> {
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of body) {
      bytes += chunk.length;
      if (bytes > settings.maxResponseBytes) {
        body.destroy();
        throw new LlmError(
          "prompt",
          `the LLM's response exceeded LLM_MAX_RESPONSE_BYTES (${settings.maxResponseBytes} bytes); raise it or set LLM_MAX_TOKENS`,
        );
      }
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString("utf8");
  }

  function describeNetworkError(error: unknown, timedOut: boolean): LlmError {
    if (error instanceof LlmError) return error;
    if (timedOut) return new LlmError("unavailable", `the LLM did not answer within LLM_TIMEOUT_SECONDS (${settings.timeoutSeconds} s)`);
    const e = error as { code?: string; message?: string; name?: string };
    if (e.name === "AbortError") return new LlmError("aborted", "the LLM call was cancelled");
    return new LlmError("unavailable", `cannot reach the LLM at ${base.origin}: ${e.code ?? e.name ?? "error"} ${e.message ?? ""}`.trim());
  }

  return {
    async generate(prompt, signal) {
      const timeout = AbortSignal.timeout(timeoutMs);
      const signals = signal ? [signal, timeout] : [timeout];
      let text: string;
      let status: number;
      let retryAfter: number | null;
      try {
        const response = await pool.request({
          path: basePath + protocol.generatePath,
          method: "POST",
          headers,
          body: JSON.stringify(protocol.requestBody(prompt)),
          signal: AbortSignal.any(signals),
        });
        status = response.statusCode;
        retryAfter = parseRetryAfter(response.headers["retry-after"]);
        const declared = Number(response.headers["content-length"]);
        if (Number.isFinite(declared) && declared > settings.maxResponseBytes) {
          response.body.destroy();
          throw new LlmError(
            "prompt",
            `the LLM's response exceeded LLM_MAX_RESPONSE_BYTES (${settings.maxResponseBytes} bytes); raise it or set LLM_MAX_TOKENS`,
          );
        }
        text = await readLimited(response.body);
      } catch (error) {
        throw describeNetworkError(error, timeout.aborted && !signal?.aborted);
      }
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      if (status < 200 || status >= 300) {
        const detail = protocol.errorMessage(body) ?? (text.trim() || "(empty body)");
        const message = scrub(`the LLM answered HTTP ${status}: ${detail}`).slice(0, MAX_ERROR_MESSAGE_CHARS);
        throw new LlmError(kindForStatus(status), message, status, retryAfter);
      }
      if (body === undefined) {
        throw new LlmError("bad_response", `the LLM answered HTTP ${status} with a body that is not JSON (${text.length} chars)`, status);
      }
      return protocol.parseAnswer(body);
    },

    async isReachable() {
      try {
        const response = await pool.request({
          path: basePath + protocol.healthPath,
          method: "GET",
          headers,
          signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
        });
        await response.body.dump();
        return response.statusCode < 500;
      } catch {
        return false;
      }
    },

    close: () => pool.close(),
  };
}
