/**
 * Whether the LLM server can take a prompt now. While it is down, or
 * misconfigured, no prompt starts and none is marked `error`; the worker
 * backs off up to LLM_OUTAGE_MAX_BACKOFF_SECONDS and logs one line per change
 * of state, never one per attempt.
 */
import { logger } from "../log";
import { outageBackoffSeconds } from "../retry_policy";

const log = logger("llm");

// A 5xx or a timeout while the server's health probe still answers may be the
// prompt's fault (it crashes the model) or the server's (it is overloaded,
// its GPU is gone). When this many different prompts fail that way in a row,
// with no success between, it is the server: no prompt pays for it. With
// fewer prompts pending than that, every pending prompt failing is enough.
export const SERVER_FAULT_DISTINCT_PROMPTS = 3;

export type HealthState = "up" | "unavailable" | "misconfigured";

export class LlmHealth {
  private state: HealthState = "up";
  private consecutiveFailures = 0;
  private blockedUntilMs = 0;
  private downSinceMs = 0;
  private readonly failingPrompts = new Set<number>();

  constructor(
    private readonly maxBackoffSeconds: number,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** True while backing off; no prompt may start. */
  isBlocked(): boolean {
    return this.nowMs() < this.blockedUntilMs;
  }

  get current(): HealthState {
    return this.state;
  }

  /** The server could not answer (refused, 5xx, 429, timeout while its health probe failed too). */
  reportUnavailable(reason: string, retryAfterSeconds: number | null = null): void {
    this.fail("unavailable", reason, retryAfterSeconds);
  }

  /**
   * A server-side failure (5xx, timeout, cut-off answer) of prompt `promptId`
   * while the server answers its health probe; `pendingPrompts` counts the
   * pendiente rows, this one included (counting up to
   * SERVER_FAULT_DISTINCT_PROMPTS is enough). True if it is the
   * server's fault, because several different prompts in a row failed that
   * way, or every pending one did (a lone prompt cannot tell its own fault
   * from the server's, and an outage must never cost a prompt). The caller
   * then reports it with reportUnavailable. False: the prompt is the suspect.
   */
  isServerWideFailure(promptId: number, pendingPrompts: number): boolean {
    this.failingPrompts.add(promptId);
    return this.failingPrompts.size >= Math.max(1, Math.min(SERVER_FAULT_DISTINCT_PROMPTS, pendingPrompts));
  }

  /** 401/403/404: a retry of the same prompt cannot help; an operator must fix the settings. */
  reportMisconfigured(reason: string): void {
    this.fail("misconfigured", reason, null);
  }

  reportSuccess(): void {
    if (this.state !== "up") {
      const downSeconds = Math.round((this.nowMs() - this.downSinceMs) / 1000);
      log.info(`LLM is answering again after ${downSeconds} s; prompts resume`, { downSeconds });
    }
    this.state = "up";
    this.consecutiveFailures = 0;
    this.blockedUntilMs = 0;
    this.failingPrompts.clear();
  }

  private fail(state: Exclude<HealthState, "up">, reason: string, retryAfterSeconds: number | null): void {
    this.consecutiveFailures += 1;
    const backoffSeconds = Math.max(
      outageBackoffSeconds(this.consecutiveFailures, this.maxBackoffSeconds),
      Math.min(retryAfterSeconds ?? 0, this.maxBackoffSeconds),
    );
    this.blockedUntilMs = this.nowMs() + backoffSeconds * 1000;
    // Per attempt, so only under LOG_LEVEL=debug: the state-change lines below are the ones operators read.
    log.debug(`LLM ${state}: no prompt starts for ${backoffSeconds} s (failure ${this.consecutiveFailures} in a row)`, {
      backoffSeconds,
      reason,
    });
    if (this.state === state) return;
    if (this.state === "up") this.downSinceMs = this.nowMs();
    this.state = state;
    if (state === "unavailable") {
      log.warn(`LLM unavailable; prompts wait (none is marked error) and retry with backoff up to ${this.maxBackoffSeconds} s`, {
        reason,
      });
    } else {
      log.error(`LLM configuration fault; prompts wait until it is fixed (check LLM_BASE_URL, LLM_MODEL, LLM_API_KEY)`, {
        reason,
      });
    }
  }
}
