/**
 * A lane: one LLM server of LLM_BASE_URL, as one worker process sees it. Its
 * HTTP client, its outage breaker, the model's stay on it, and what the
 * worker records of it in fila_llm_servers. Each lane has its own
 * graphile-worker runner for process_prompt (src/worker.ts), with
 * LLM_CONCURRENCY_PER_SERVER slots, and runs only while this process holds
 * the lane's lock (src/session.ts): so one server never has more requests in
 * flight than that, across every process, and a server that is down or
 * misconfigured takes only its own lane out.
 */
import type { Pool } from "pg";
import { serverName, type Config } from "./config";
import { createLlmClient, type LlmClient } from "./llm/client";
import { ModelResidency } from "./llm/model_residency";
import { OutageBreaker } from "./llm/outage_breaker";
import { serverStateRecorder, type ServerStateRecorder } from "./llm/server_state";
import { logger } from "./log";

const log = logger("llm");

export class Lane {
  /** The server's URL without credentials: its name in logs, locks and tables. */
  readonly server: string;
  readonly llm: LlmClient;
  readonly breaker: OutageBreaker;
  readonly residency: ModelResidency;
  /** The graphile-worker pool of this lane's runner in this process, once it runs. */
  poolId: string | null = null;
  private readonly state: ServerStateRecorder;
  private probe: Promise<boolean> | null = null;
  // The back-off (its end, as the breaker gives it) after which the probe last answered.
  private probedAfter: number | null = null;

  constructor(settings: Config["llm"], baseUrl: string, pool: Pool, nowMs: () => number = Date.now) {
    this.server = serverName(baseUrl);
    this.llm = createLlmClient(settings, baseUrl);
    this.state = serverStateRecorder(pool, this.server);
    this.breaker = new OutageBreaker(settings.outageMaxBackoffSeconds, nowMs, this.state.breakerChanged, this.server);
    this.residency = new ModelResidency(this.llm, settings, this.state.residency);
  }

  /** This process took the lane's lock: its runner's pool runs the server's prompts now (for status). */
  taken(): void {
    if (this.poolId !== null) this.state.laneTaken(this.poolId);
  }

  /**
   * May this server be given a prompt now? Not while its breaker backs off.
   * Once the back-off of an outage is over, the server is probed first (one
   * cheap GET, shared by the lane's slots), so that a server still down costs
   * a probe and not a prompt's trip to it and back: the lane rejoins as soon
   * as a probe answers, and the next back-off is longer if none does.
   */
  async ready(): Promise<boolean> {
    if (this.breaker.isBlocked()) return false;
    if (this.breaker.current !== "unavailable") return true;
    // One probe per back-off: once it answered, the prompts go, until the next failure.
    if (this.probedAfter === this.breaker.blockedUntil) return true;
    this.probe ??= this.probeOnce().finally(() => (this.probe = null));
    return this.probe;
  }

  private async probeOnce(): Promise<boolean> {
    const backoff = this.breaker.blockedUntil;
    this.breaker.probing();
    const reachable = await this.llm.isReachable();
    if (reachable) this.probedAfter = backoff;
    else this.breaker.reportUnavailable("its health probe still fails");
    return reachable;
  }

  async close(): Promise<void> {
    await this.llm.close().catch((error) => log.debug("could not close the LLM client", { server: this.server, error: (error as Error).message }));
  }
}
