/**
 * How an LLM call failed: the facts, sorted by kind. What each kind means for
 * the prompt (error now, retry, keep its place) is src/failure_policy.ts's to
 * decide; the kind is also what fila_llm_outcome.finish_reason records.
 *
 * - rejected:     the server refused the prompt (HTTP 400, 413, 422).
 * - truncated_input: the prompt is longer than the server's context: refused
 *                 (src/llm/truncation.ts recognises each server's words), or
 *                 trimmed, as Ollama does without a word.
 * - too_large:    the answer reached LLM_MAX_RESPONSE_BYTES; the stream was cut.
 * - repetition:   the answer became a loop (src/llm/repetition_guard.ts); cut.
 * - timeout:      still generating at LLM_TIMEOUT_SECONDS; cut.
 * - stall:        the stream started, then sent nothing for LLM_STALL_SECONDS; cut.
 * - server_lost:  the server stopped answering its health probe during the call; cut.
 * - unavailable:  refused or reset connection, 5xx, 429, a body cut off, no
 *                 answer at all within LLM_TIMEOUT_SECONDS.
 * - bad_response: a 2xx that cannot be used (not JSON, no text).
 * - config:       401/403, or 404 for the model: nothing a retry of this prompt fixes.
 * - load_failed:  the server answered the model's load with an error (missing,
 *                 out of memory): a configuration fault too.
 * - aborted:      we cancelled the call (shutdown grace over, the lane lost).
 */
export type LlmErrorKind =
  | "rejected"
  | "truncated_input"
  | "too_large"
  | "repetition"
  | "timeout"
  | "stall"
  | "server_lost"
  | "unavailable"
  | "bad_response"
  | "config"
  | "load_failed"
  | "aborted";

export class LlmError extends Error {
  constructor(
    readonly kind: LlmErrorKind,
    message: string,
    readonly httpStatus: number | null = null,
    /** From a Retry-After header, when the server sent one. */
    readonly retryAfterSeconds: number | null = null,
    /** What the answer held when a generation was cut, for the operator to see. */
    readonly partialAnswer: string | null = null,
  ) {
    super(message);
    this.name = "LlmError";
  }
}

/** Sorts an HTTP error status into the kind of failure it means. */
export function kindForStatus(status: number): LlmErrorKind {
  if (status === 400 || status === 413 || status === 422) return "rejected";
  if (status === 408 || status === 429 || status >= 500) return "unavailable";
  return "config";
}

/** Parses Retry-After (seconds, or an HTTP date) into seconds from now. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | null {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text) return null;
  if (/^\d+(\.\d+)?$/.test(text.trim())) return Number(text.trim());
  const date = Date.parse(text);
  return Number.isNaN(date) ? null : Math.max(0, (date - now) / 1000);
}
