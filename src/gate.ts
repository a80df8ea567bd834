/**
 * May a prompt start now, on this lane, in this process? graphile-worker asks
 * before every fetch through `forbiddenFlags`, and the task asks once more
 * just before it calls the LLM, so no request ever starts outside the window.
 *
 * Yes only if all hold:
 * - this process is not shutting down;
 * - the queue is open: inside the window or forced open, and not paused
 *   (src/queue_state.ts);
 * - the lane's server is not in an outage back-off (src/lane.ts);
 * - this process holds the lane (one holder per server across all processes).
 */
import type { Pool } from "pg";
import { logger } from "./log";
import { queueState, type QueueState } from "./queue_state";
import type { Session } from "./session";
import { readControl, type ControlState } from "./sql/control";
import type { WindowSpec } from "./window";

// Operator changes (pause, open-now) take effect within this long.
const CONTROL_CACHE_MS = 1_000;

const log = logger("gate");

export type Clock = () => Date;

/** What the gate needs of a lane (src/lane.ts). */
export interface LaneGate {
  /** The server's name, which names its lock. */
  readonly server: string;
  /** False while its server backs off after an outage (or is probed and still down). */
  ready(): Promise<boolean>;
}

export class Gate {
  private shuttingDown = false;
  private control: ControlState = { paused: false, openUntil: null };
  private controlReadAtMs = -Infinity;
  /** Wakes the slots that wait for the gate, at shutdown. */
  private readonly wake = new Set<() => void>();

  constructor(
    private readonly opts: {
      window: WindowSpec;
      pool: Pool;
      session: Session;
      clock: Clock;
      /** The flag of every process_prompt job (fila_llm_prompt_job_flag(), migrations/0008). */
      promptJobFlag: string;
      /** How often a waiting slot looks again: WORKER_POLL_INTERVAL_MS. */
      recheckMs: number;
    },
  ) {}

  /**
   * For graphile-worker's `forbiddenFlags`, on the runner of `lane`: waits
   * until a prompt may start, then allows the fetch. A runner that fetched
   * with the prompts' flag forbidden would walk past every waiting prompt to
   * find none (0.2 s at 1,000,000 pending, on each poll of each process): so
   * while the gate is shut the slot waits here, and asks nothing of the
   * database but the control row (cached) and the lane lock (once a second).
   * At shutdown it answers at once with the flag forbidden: the slot's last
   * fetch then takes nothing, and the runner stops.
   */
  forbiddenFlagsFor(lane: LaneGate): () => Promise<string[]> {
    return async () => {
      for (;;) {
        if (this.shuttingDown) return [this.opts.promptJobFlag];
        if (await this.mayStartPrompt(lane)) return [];
        await this.nap(this.opts.recheckMs);
      }
    };
  }

  /** Stop starting prompts (SIGTERM/SIGINT); the ones in flight may finish. */
  beginShutdown(): void {
    this.shuttingDown = true;
    for (const wake of this.wake) wake();
  }

  /** True once the process has begun to stop. */
  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** Is the queue open now: inside the window or forced open, and not paused? */
  async isOpen(): Promise<boolean> {
    return (await this.state()).open;
  }

  /** The queue's state now: open, inside the window, paused, forced open. */
  async state(): Promise<QueueState> {
    return queueState(this.opts.clock(), this.opts.window, await this.readControl());
  }

  /** All the conditions above, for this lane in this process. */
  async mayStartPrompt(lane: LaneGate): Promise<boolean> {
    if (this.shuttingDown || !(await this.isOpen())) return false;
    // The lane first: only its holder probes its server (and records what it sees).
    if (!(await this.opts.session.tryTakeLane(lane.server))) return false;
    return lane.ready();
  }

  private nap(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake.add(done);
    });
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
