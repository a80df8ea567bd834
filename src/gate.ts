/**
 * May a prompt start now, in this process? graphile-worker asks before every
 * fetch through `forbiddenFlags`, and the task asks once more just before it
 * calls the LLM, so no request ever starts outside the window.
 *
 * Yes only if all hold:
 * - this process is not shutting down;
 * - it is the leader (concurrency 1 across all worker processes);
 * - the LLM is not in an outage backoff;
 * - the operators have not paused the queue;
 * - the queue is open: inside the window or forced open, and not paused
 *   (src/queue_state.ts).
 */
import type { Pool } from "pg";
import type { OutageBreaker } from "./llm/outage_breaker";
import { logger } from "./log";
import { queueState, type QueueState } from "./queue_state";
import type { Session } from "./session";
import { readControl, type ControlState } from "./sql/control";
import type { WindowSpec } from "./window";

// Operator changes (pause, open-now) take effect within this long.
const CONTROL_CACHE_MS = 1_000;

const log = logger("gate");

export type Clock = () => Date;

export class Gate {
  private shuttingDown = false;
  private control: ControlState = { paused: false, openUntil: null };
  private controlReadAtMs = -Infinity;

  constructor(
    private readonly opts: {
      window: WindowSpec;
      pool: Pool;
      session: Session;
      breaker: OutageBreaker;
      clock: Clock;
      /** The flag of every process_prompt job (fila_llm_prompt_job_flag(), migrations/0008). */
      promptJobFlag: string;
    },
  ) {}

  /** For graphile-worker: the flags to skip on this fetch. */
  readonly forbiddenFlags = async (): Promise<string[]> => ((await this.mayStartPrompt()) ? [] : [this.opts.promptJobFlag]);

  /** Stop starting prompts (SIGTERM/SIGINT); the one in flight may finish. */
  beginShutdown(): void {
    this.shuttingDown = true;
  }

  /** Is the queue open now: inside the window or forced open, and not paused? */
  async isOpen(): Promise<boolean> {
    return (await this.state()).open;
  }

  /** The queue's state now: open, inside the window, paused, forced open. */
  async state(): Promise<QueueState> {
    return queueState(this.opts.clock(), this.opts.window, await this.readControl());
  }

  /** All the conditions above, for this process. */
  async mayStartPrompt(): Promise<boolean> {
    if (this.shuttingDown || this.opts.breaker.isBlocked()) return false;
    if (!(await this.isOpen())) return false;
    return this.opts.session.tryLead();
  }

  private async readControl(): Promise<ControlState> {
    const nowMs = Date.now();
    if (nowMs - this.controlReadAtMs >= CONTROL_CACHE_MS) {
      try {
        this.control = await readControl(this.opts.pool);
        this.controlReadAtMs = nowMs;
      } catch (error) {
        // Database away: start nothing until the state can be read again.
        log.debug("cannot read fila_llm_control", { error: (error as Error).message });
        return { paused: true, openUntil: null };
      }
    }
    return this.control;
  }
}
