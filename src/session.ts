/**
 * One dedicated database session per worker process. It holds two kinds of
 * session advisory lock, which PostgreSQL drops the moment the process or its
 * connection dies:
 *
 * - a liveness lock per graphile-worker pool id: "this pool is alive", so
 *   the reaper may free the jobs of a dead pool and never those of a live one;
 * - a lane lock per LLM server: only its holder runs that server's
 *   `process_prompt` jobs, which keeps each server's requests in flight at
 *   LLM_CONCURRENCY_PER_SERVER (1 by default) across any number of worker
 *   processes, without a named queue (named queues stall a poll interval
 *   between jobs on 0.17).
 */
import { Client } from "pg";
import { logger } from "./log";

const log = logger("session");

// Advisory lock "classes" (the first int4 of the two-key form). Fixed numbers,
// the same in every process; the reaper's query uses LIVENESS_LOCK_CLASS too.
export const LIVENESS_LOCK_CLASS = 7_004_202;
// The second key is hashtext(the server's URL without credentials), so every
// process names a server's lane alike, whatever the order of LLM_BASE_URL.
const LANE_LOCK_CLASS = 7_004_203;
// How often a process asks for a lane it does not hold; also the failover delay.
const LANE_RETRY_MS = 1_000;
const RECONNECT_DELAY_MS = 1_000;

export class Session {
  private client: Client | null = null;
  /** The lanes this session holds, each with the signal its calls stop on if the lock is lost. */
  private readonly held = new Map<string, AbortController>();
  private readonly lastAttemptMs = new Map<string, number>();
  private readonly poolIds = new Set<string>();
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly connectionString: string,
    /** Told each time this session takes a lane (the worker records who runs it, for status). */
    private readonly onLaneTaken: (server: string) => void = () => {},
    /** Told each time the session comes back after its connection was lost (PostgreSQL restarted or crashed). */
    private readonly onRestored: () => void = () => {},
  ) {}

  /** Connects; throws if the database cannot be reached at start-up. */
  async start(): Promise<void> {
    await this.connect();
  }

  /** True while this process holds the lane of `server` on a live connection. */
  holds(server: string): boolean {
    return this.held.has(server);
  }

  /** Aborted when this process loses the lane of `server` (its session died): the calls in flight there must stop. */
  laneSignal(server: string): AbortSignal {
    return this.held.get(server)?.signal ?? AbortSignal.abort(new Error("this process does not hold the lane"));
  }

  /** Takes the lane of `server` if it is free; cheap to call before every fetch. */
  async tryTakeLane(server: string): Promise<boolean> {
    if (this.held.has(server) || !this.client) return this.held.has(server);
    const now = Date.now();
    if (now - (this.lastAttemptMs.get(server) ?? 0) < LANE_RETRY_MS) return false;
    this.lastAttemptMs.set(server, now);
    try {
      const { rows } = await this.client.query("SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok", [LANE_LOCK_CLASS, server]);
      if (rows[0].ok && !this.held.has(server)) {
        this.held.set(server, new AbortController());
        log.info(`this process now runs the prompts of ${server}`, { server });
        this.onLaneTaken(server);
      }
    } catch (error) {
      log.warn("could not ask for a lane lock", { server, error: (error as Error).message });
    }
    return this.held.has(server);
  }

  /** The graphile-worker pools of this process: alive by definition, whatever the locks say. */
  get ownPoolIds(): string[] {
    return [...this.poolIds];
  }

  /** Marks a graphile-worker pool as alive for as long as this session lives. */
  async holdPoolLock(poolId: string): Promise<void> {
    this.poolIds.add(poolId);
    if (this.client) await this.lockPool(this.client, poolId);
  }

  /** Releases the locks and closes the session. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = null;
    this.held.clear();
    if (client) await client.end().catch(() => {});
  }

  private async lockPool(client: Client, poolId: string): Promise<void> {
    await client.query("SELECT pg_advisory_lock($1, hashtext($2))", [LIVENESS_LOCK_CLASS, poolId]);
  }

  private async connect(): Promise<void> {
    const client = new Client({ connectionString: this.connectionString, application_name: "fila-llm session" });
    client.on("error", (error) => this.lost(client, error.message));
    client.on("end", () => this.lost(client, "connection ended"));
    try {
      await client.connect();
      for (const poolId of this.poolIds) await this.lockPool(client, poolId);
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    this.client = client;
  }

  private lost(client: Client, reason: string): void {
    if (this.client !== client) return;
    this.client = null;
    client.end().catch(() => {});
    if (this.held.size > 0) {
      log.warn("lost the database session and with it its lanes; the prompts in flight are abandoned", { reason, lanes: [...this.held.keys()] });
      for (const lane of this.held.values()) lane.abort(new Error("lane lost"));
      this.held.clear();
    }
    if (!this.closed) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    this.reconnectTimer = setTimeout(async () => {
      this.reconnectTimer = null;
      try {
        await this.connect();
        log.info("database session restored");
        this.onRestored();
      } catch {
        if (!this.closed) this.scheduleReconnect();
      }
    }, RECONNECT_DELAY_MS);
    this.reconnectTimer.unref();
  }
}
