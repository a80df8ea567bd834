/**
 * Whether the LLM server can take a prompt now. While it is down, or
 * misconfigured, no prompt starts and none is marked `error`; the worker
 * backs off up to LLM_OUTAGE_MAX_BACKOFF_SECONDS and logs one line per change
 * of state, never one per attempt.
 */
import { logger } from "../log";
import { outageBackoffSeconds } from "../retry_policy";

const log = logger("llm");

export type HealthState = "up" | "unavailable" | "misconfigured";

export class LlmHealth {
  private state: HealthState = "up";
  private consecutiveFailures = 0;
  private blockedUntilMs = 0;
  private downSinceMs = 0;

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
  }

  private fail(state: Exclude<HealthState, "up">, reason: string, retryAfterSeconds: number | null): void {
    this.consecutiveFailures += 1;
    const backoffSeconds = Math.max(
      outageBackoffSeconds(this.consecutiveFailures, this.maxBackoffSeconds),
      Math.min(retryAfterSeconds ?? 0, this.maxBackoffSeconds),
    );
    this.blockedUntilMs = this.nowMs() + backoffSeconds * 1000;
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
