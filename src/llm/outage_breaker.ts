/**
 * The outage breaker: whether the LLM server may be given a prompt now.
 * While it is down or misconfigured, no prompt starts and none is marked
 * `error`; the worker backs off up to LLM_OUTAGE_MAX_BACKOFF_SECONDS and logs
 * one line per change of state, never one per attempt. What counts as an
 * outage is decided by src/failure_policy.ts; this only keeps the state.
 */
import { outageBackoffSeconds } from "../failure_policy";
import { logger } from "../log";

const log = logger("llm");

export type BreakerState = "up" | "unavailable" | "misconfigured";
/** What `onChange` hears: the state, or that the back-off is over and the server is being probed. */
export type ReportedState = BreakerState | "probing";

export class OutageBreaker {
  private state: BreakerState = "up";
  private reported: ReportedState = "up";
  private consecutiveFailures = 0;
  private blockedUntilMs = 0;
  private downSinceMs = 0;
  private readonly failingPrompts = new Set<number>();

  constructor(
    private readonly maxBackoffSeconds: number,
    private readonly nowMs: () => number = Date.now,
    /** Told of each change of state (not of each failure): the worker records it for `status`. */
    private readonly onChange: (state: ReportedState, reason: string | null) => void = () => {},
    /** The server, for the log lines. */
    private readonly server: string | null = null,
  ) {}

  /** True while backing off; no prompt may start. */
  isBlocked(): boolean {
    return this.nowMs() < this.blockedUntilMs;
  }

  get current(): BreakerState {
    return this.state;
  }

  /** Until when no prompt starts (ms since the epoch; 0 when not blocked). */
  get blockedUntil(): number {
    return this.blockedUntilMs;
  }

  /** The server could not take the prompt; it is down (or rate-limiting). */
  reportUnavailable(reason: string, retryAfterSeconds: number | null = null): void {
    this.fail("unavailable", reason, retryAfterSeconds);
  }

  /** 401/403/404: a retry of the same prompt cannot help; an operator must fix the settings. */
  reportMisconfigured(reason: string): void {
    this.fail("misconfigured", reason, null);
  }

  /**
   * Notes that prompt `promptId` failed server-side (5xx, timeout, cut-off
   * answer) while the server answered its health probe. Returns how many
   * distinct prompts have failed so since the last success, this one included.
   */
  noteServerSideFailure(promptId: number): number {
    this.failingPrompts.add(promptId);
    return this.failingPrompts.size;
  }

  /** The back-off is over and the server is being probed before it gets a prompt again (src/lane.ts). */
  probing(): void {
    this.tell("probing", null);
  }

  reportSuccess(): void {
    if (this.state !== "up") {
      const downSeconds = Math.round((this.nowMs() - this.downSinceMs) / 1000);
      log.info(`LLM is answering again after ${downSeconds} s; prompts resume`, { downSeconds, ...this.serverField() });
    }
    this.tell("up", null);
    this.state = "up";
    this.consecutiveFailures = 0;
    this.blockedUntilMs = 0;
    this.failingPrompts.clear();
  }

  private fail(state: Exclude<BreakerState, "up">, reason: string, retryAfterSeconds: number | null): void {
    // The other requests in flight on the same server fail with it (LLM_CONCURRENCY_PER_SERVER > 1):
    // one outage, one step of the back-off, not one per request; a longer Retry-After still counts.
    const sameBackoff = this.isBlocked() && this.state === state;
    if (!sameBackoff) this.consecutiveFailures += 1;
    const backoffSeconds = outageBackoffSeconds(this.consecutiveFailures, this.maxBackoffSeconds, retryAfterSeconds);
    this.blockedUntilMs = Math.max(sameBackoff ? this.blockedUntilMs : 0, this.nowMs() + backoffSeconds * 1000);
    // Per attempt, so only under LOG_LEVEL=debug: the state-change lines below are the ones operators read.
    log.debug(`LLM ${state}: no prompt starts for ${backoffSeconds} s (failure ${this.consecutiveFailures} in a row)`, {
      backoffSeconds,
      reason,
      ...this.serverField(),
    });
    this.tell(state, reason);
    if (this.state === state) return;
    if (this.state === "up") this.downSinceMs = this.nowMs();
    this.state = state;
    if (state === "unavailable") {
      log.warn(`LLM unavailable; prompts wait (none is marked error) and retry with backoff up to ${this.maxBackoffSeconds} s`, {
        reason,
        ...this.serverField(),
      });
    } else {
      log.error(`LLM configuration fault; prompts wait until it is fixed (check LLM_BASE_URL, LLM_MODEL, LLM_API_KEY)`, {
        reason,
        ...this.serverField(),
      });
    }
  }

  private tell(state: ReportedState, reason: string | null): void {
    if (this.reported === state) return;
    this.reported = state;
    this.onChange(state, reason);
  }

  private serverField(): { server?: string } {
    return this.server === null ? {} : { server: this.server };
  }
}
