/**
 * What a failed LLM call means for its prompt, and what happens next: the
 * whole rule, as pure functions of the facts. tasks/process_prompt.ts gathers
 * the facts (the error, the prompt's own failures so far, whether the server
 * answers its health probe, whether other prompts fail the same way) and does
 * the I/O; docs/architecture.md has the rule as a table, and
 * test/failure_policy.test.ts holds it row for row.
 *
 * graphile-worker's own retries are not used: it counts every failure,
 * outages included, and backs off exp(attempts) seconds, up to ~6 hours,
 * which would push a prompt past the night. Every delay here is capped at
 * about a minute.
 */
import type { LlmErrorKind } from "./llm/errors";

// A 5xx or a timeout while the server's health probe still answers may be the
// prompt's fault (it crashes the model) or the server's (it is overloaded,
// its GPU is gone). When this many different prompts fail that way in a row,
// with no success between, it is the server: no prompt pays for it. With
// fewer prompts pending than that, every pending prompt failing is enough.
export const SERVER_FAULT_DISTINCT_PROMPTS = 3;

const PROMPT_RETRY_MAX_SECONDS = 60;

export interface FailureFacts {
  error: { kind: LlmErrorKind; message: string; httpStatus: number | null; retryAfterSeconds: number | null };
  /** Failures already counted against this prompt (outages never are). */
  failuresBefore: number;
  /** Gathered only when needsServerFacts(error): did the server answer its health probe? */
  serverReachable?: boolean;
  /** With the server reachable: distinct prompts in a row that failed this way, this one included. */
  failingPromptsInARow?: number;
  /** With the server reachable: pendiente rows, counted up to SERVER_FAULT_DISTINCT_PROMPTS. */
  pendingPrompts?: number;
}

export interface PolicySettings {
  maxAttempts: number;
  retryDelaySeconds: number;
  outageMaxBackoffSeconds: number;
}

/**
 * - keep_place: not the prompt's fault. It goes back at its old run_at, so it
 *   keeps its FIFO place, with no attempt used; `breaker` says what the outage
 *   breaker must hear (null: nothing, e.g. our own cancellation).
 * - retry: counted against the prompt, which runs again after `delaySeconds`
 *   (other prompts go first: a success between two failures is what tells a
 *   bad prompt from a bad server).
 * - fail: the row ends 'error' now, with `message`.
 */
export type FailureDecision =
  | { action: "keep_place"; cause: "interrupted" | "outage" | "misconfigured"; breaker: "unavailable" | "misconfigured" | null; message: string }
  | { action: "retry"; failures: number; delaySeconds: number; message: string }
  | { action: "fail"; failures: number; message: string };

/** True when the decision depends on the server's state, so the task must probe it first. */
export function needsServerFacts(error: FailureFacts["error"]): boolean {
  return (error.kind === "unavailable" && error.httpStatus !== 429) || error.kind === "stall";
}

/** The decision for one failed call. */
export function decideFailure(facts: FailureFacts, settings: PolicySettings): FailureDecision {
  const { error } = facts;
  switch (error.kind) {
    case "aborted":
      // Shutdown grace over, or the lane lost: ours, not the prompt's.
      return { action: "keep_place", cause: "interrupted", breaker: null, message: error.message };
    case "config":
      // 401/403/404: no retry of this prompt can help; an operator must fix the settings.
      return { action: "keep_place", cause: "misconfigured", breaker: "misconfigured", message: error.message };
    case "load_failed":
      // Loading the model is never the prompt's fault: a server that answers
      // the load with an error cannot load it (missing, out of memory), one
      // that does not answer is down.
      return error.httpStatus !== null
        ? { action: "keep_place", cause: "misconfigured", breaker: "misconfigured", message: error.message }
        : { action: "keep_place", cause: "outage", breaker: "unavailable", message: error.message };
    case "rejected":
    case "truncated_input":
    case "too_large":
    // A loop, or a generation still running at the timeout, is the prompt's
    // own: at the same settings it loops again. It costs the night at most the
    // time to detect it, also when it is the last prompt left; an operator can
    // retry it by SQL.
    case "repetition":
    case "timeout":
      return { action: "fail", failures: facts.failuresBefore + 1, message: error.message };
    case "server_lost":
      // The server stopped answering its probe while it held the call open.
      return { action: "keep_place", cause: "outage", breaker: "unavailable", message: error.message };
    case "unavailable":
    case "stall":
      // A stall is ambiguous: the server may have died. The probe tells.
      if (isOutage(facts)) return { action: "keep_place", cause: "outage", breaker: "unavailable", message: error.message };
      return counted(facts, settings);
    case "bad_response":
      return counted(facts, settings);
  }
}

/**
 * A 429, a server that does not even answer its health probe, or one that
 * fails prompt after prompt, is an outage: no prompt pays for it. A lone
 * prompt cannot tell its own fault from the server's, and an outage must
 * never cost a prompt, so with fewer prompts pending than the threshold,
 * every pending prompt failing is enough.
 */
function isOutage(facts: FailureFacts): boolean {
  if (facts.error.httpStatus === 429 || facts.serverReachable !== true) return true;
  const threshold = Math.max(1, Math.min(SERVER_FAULT_DISTINCT_PROMPTS, facts.pendingPrompts ?? SERVER_FAULT_DISTINCT_PROMPTS));
  return (facts.failingPromptsInARow ?? 1) >= threshold;
}

/** A failure counted against the prompt: retried after a delay, or final after LLM_MAX_ATTEMPTS. */
function counted(facts: FailureFacts, settings: PolicySettings): FailureDecision {
  const failures = facts.failuresBefore + 1;
  if (failures >= settings.maxAttempts) {
    return { action: "fail", failures, message: `${facts.error.message} (failed ${failures} times; LLM_MAX_ATTEMPTS=${settings.maxAttempts})` };
  }
  // A server that says when to come back (Retry-After on a 503, say) is taken at its word, within the outage cap.
  const delaySeconds = Math.max(
    promptRetryDelaySeconds(failures, settings.retryDelaySeconds),
    Math.min(facts.error.retryAfterSeconds ?? 0, settings.outageMaxBackoffSeconds),
  );
  return { action: "retry", failures, delaySeconds, message: facts.error.message };
}

/**
 * Delay before retrying a prompt that has failed `failures` times (1, 2, …):
 * base, 2×base, 4×base, … up to 60 s (with the default 5 s: 5, 10, 20, 40, 60).
 */
export function promptRetryDelaySeconds(failures: number, baseSeconds: number): number {
  return Math.min(PROMPT_RETRY_MAX_SECONDS, baseSeconds * 2 ** Math.max(0, failures - 1));
}

/**
 * Pause after the `consecutive`-th outage failure in a row: 1, 2, 4, … s up
 * to `maxSeconds`, or longer if the server asked for it (Retry-After), within
 * the same cap.
 */
export function outageBackoffSeconds(consecutive: number, maxSeconds: number, retryAfterSeconds: number | null = null): number {
  return Math.max(Math.min(maxSeconds, 2 ** Math.max(0, consecutive - 1)), Math.min(retryAfterSeconds ?? 0, maxSeconds));
}
