/**
 * Why an LLM call failed, sorted by what the worker must do about it.
 *
 * - prompt:       the prompt itself is at fault (HTTP 400/413/422, an answer
 *                 over LLM_MAX_RESPONSE_BYTES): the row becomes `error` at once.
 * - config:       401/403, or 404 for the model: nothing a retry of this prompt
 *                 fixes. Logged loudly; prompts are not marked `error`.
 * - unavailable:  refused or reset connection, timeout, 5xx, 429, cut-off body:
 *                 an outage unless a health probe shows the server is up.
 * - bad_response: the server answered 2xx with something unusable (not JSON,
 *                 no text): counted against the prompt and retried.
 * - aborted:      we cancelled the call (shutdown grace over, leadership lost).
 */
export type LlmErrorKind = "prompt" | "config" | "unavailable" | "bad_response" | "aborted";

export class LlmError extends Error {
  constructor(
    readonly kind: LlmErrorKind,
    message: string,
    readonly httpStatus: number | null = null,
    /** From a Retry-After header, when the server sent one. */
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message);
    this.name = "LlmError";
  }
}

/** Sorts an HTTP error status into the kind of failure it means. */
export function kindForStatus(status: number): LlmErrorKind {
  if (status === 400 || status === 413 || status === 422) return "prompt";
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
