/**
 * One dedicated database session per worker process. It holds two kinds of
 * session advisory lock, which PostgreSQL drops the moment the process or its
 * connection dies:
 *
 * - a liveness lock per graphile-worker pool id: "this pool is alive", so
 *   the reaper may free the jobs of a dead pool and never those of a live one;
 * - the leader lock: only its holder runs `process_prompt` jobs, which keeps
 *   concurrency at 1 across any number of worker processes without a named
 *   queue (named queues stall a poll interval between jobs on 0.17).
 */
import { Client } from "pg";
import { logger } from "./log";

const log = logger("session");

// Advisory lock "classes" (the first int4 of the two-key form). Fixed numbers,
// the same in every process; the reaper's query uses LIVENESS_LOCK_CLASS too.
export const LIVENESS_LOCK_CLASS = 7_004_202;
const LEADER_LOCK_CLASS = 7_004_203;
const LEADER_LOCK_KEY = 1;
// How often a follower asks for the leader lock; also the failover delay.
const LEADER_RETRY_MS = 1_000;
const RECONNECT_DELAY_MS = 1_000;

export class Session {
  private client: Client | null = null;
  private leader = false;
  private lastLeaderAttemptMs = 0;
  private readonly poolIds = new Set<string>();
  private leadership = new AbortController();
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | null = null;

  constructor(private readonly connectionString: string) {}

  /** Connects; throws if the database cannot be reached at start-up. */
  async start(): Promise<void> {
    await this.connect();
  }

  /** True while this process holds the leader lock on a live connection. */
  get isLeader(): boolean {
    return this.leader;
  }

  /** Aborted when this process loses leadership (its session died): the call in flight must stop. */
  get leadershipSignal(): AbortSignal {
    return this.leadership.signal;
  }

  /** Takes the leader lock if it is free; cheap to call before every fetch. */
  async tryLead(): Promise<boolean> {
    if (this.leader || !this.client) return this.leader;
    const now = Date.now();
    if (now - this.lastLeaderAttemptMs < LEADER_RETRY_MS) return false;
    this.lastLeaderAttemptMs = now;
    try {
      const { rows } = await this.client.query("SELECT pg_try_advisory_lock($1, $2) AS ok", [LEADER_LOCK_CLASS, LEADER_LOCK_KEY]);
      if (rows[0].ok && !this.leader) {
        this.leader = true;
        this.leadership = new AbortController();
        log.info("this process is now the leader: it runs the prompts");
      }
    } catch (error) {
      log.warn("could not ask for the leader lock", { error: (error as Error).message });
    }
    return this.leader;
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
    this.leader = false;
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
    if (this.leader) {
      log.warn("lost the database session and with it leadership; the prompt in flight is abandoned", { reason });
      this.leader = false;
      this.leadership.abort(new Error("leadership lost"));
    }
    if (!this.closed) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    this.reconnectTimer = setTimeout(async () => {
      this.reconnectTimer = null;
      try {
        await this.connect();
        log.info("database session restored");
      } catch {
        if (!this.closed) this.scheduleReconnect();
      }
    }, RECONNECT_DELAY_MS);
    this.reconnectTimer.unref();
  }
}
