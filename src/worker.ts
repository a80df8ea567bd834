/**
 * Starts one worker process: its database session (lane and liveness locks),
 * its gate, and its graphile-worker runners:
 *
 * - one runner per LLM server (a lane), on graphile_worker, that runs only
 *   process_prompt, with LLM_CONCURRENCY_PER_SERVER slots, and only while this
 *   process holds that server's lane;
 * - one housekeeping runner, on the fila_llm_housekeeping queue, with the
 *   crontab: window_gate and enqueue_prompts run there, never in a slot that
 *   feeds an LLM;
 *
 * and, on timers, the dead-pool reaper and the model's release.
 */
import { EventEmitter } from "node:events";
import path from "node:path";
import type { Pool } from "pg";
import { run, type Runner, type TaskList, type WorkerEvents } from "graphile-worker";
import enqueuePrompts from "../tasks/enqueue_prompts";
import processPrompt from "../tasks/process_prompt";
import windowGate from "../tasks/window_gate";
import { answersWritten, MAX_WAITING_ANSWERS } from "./answer_writer";
import type { Config } from "./config";
import { setAppContext } from "./context";
import { createPool, endPool, isDatabaseUnavailable } from "./db";
import { Gate, type Clock } from "./gate";
import { Lane } from "./lane";
import { graphileLogger, logger, registerSecret } from "./log";
import { HOUSEKEEPING_SCHEMA } from "./queues";
import { projectRoot } from "./paths";
import { Session } from "./session";
import { enqueueOrphans, freeOwnStaleJobs, readPromptJobFlag, reapDeadPools, type JobQueue } from "./sql/jobs";
import { getTokenCounter } from "./tokens/index";

const log = logger("worker");

// With the reaper's 5 s grace, a killed worker's prompt runs again within ~10 s.
const REAP_INTERVAL_MS = 5_000;
// How often the model's release is considered: an unload arrives within this of the window's end.
const RELEASE_CHECK_MS = 5_000;
// Past the reaper's grace and two passes more: by then a lost completion's job has been freed.
const LOST_COMPLETION_SEARCH_MS = 20_000;
// The housekeeping runner's one slot: window_gate takes milliseconds, and a
// bulk statement's jobs are added a batch at a time, so one is enough.
const HOUSEKEEPING_CONCURRENCY = 1;

// How long a stop waits for the last job completions on the jobs' pool.
const JOBS_POOL_DRAIN_MS = 5_000;

/** Resolves when no query is running or waiting on `pool` (or after `maxMs`). */
async function poolIdle(pool: Pool, maxMs: number): Promise<void> {
  const deadline = Date.now() + maxMs;
  do {
    await new Promise((r) => setTimeout(r, 10));
  } while ((pool.waitingCount > 0 || pool.idleCount < pool.totalCount) && Date.now() < deadline);
}

/** The workers running in this process that can take on a lost completion. */
const liveWorkers = new Set<{ completionLost(): void }>();

/**
 * graphile-worker 0.17 does not await the query that completes or fails a job
 * (worker.js), so a database restart at that instant surfaces as an unhandled
 * rejection, and the job stays locked by this live pool, which no reaper
 * frees, for graphile-worker's 4 hours. Returns true when a running worker
 * takes that on: once the database is back, it frees the job, which then runs
 * again (a prompt already answered is skipped). Anything else is not ours to
 * absorb, and the caller exits so that pm2 restarts the worker.
 */
export function absorbDatabaseRejection(error: unknown): boolean {
  if (!isDatabaseUnavailable(error) || liveWorkers.size === 0) return false;
  for (const worker of liveWorkers) worker.completionLost();
  return true;
}

/**
 * The connections of the durable pool one worker process needs at most: the
 * housekeeping runner's LISTEN connection and slot, one per prompt slot (its
 * row's reads and writes), the answers being written, the reaper, the gate's
 * control read and the orphan repair. The lanes' runners have a pool of their own.
 */
export function poolSize(config: Config): number {
  return 3 + (1 + HOUSEKEEPING_CONCURRENCY) + MAX_WAITING_ANSWERS + config.llm.baseUrls.length * config.llm.concurrencyPerServer;
}

/**
 * The connections of the lanes' pool: each runner's LISTEN connection, and
 * two per slot, because graphile-worker does not wait for a job's completion
 * before it fetches the next job on the LLM's critical path.
 */
export function jobsPoolSize(config: Config): number {
  const lanes = config.llm.baseUrls.length;
  return lanes * (1 + 2 * config.llm.concurrencyPerServer) + 2;
}

export interface WorkerHandle {
  /** Every graphile-worker runner of this process: the lanes' and the housekeeping one. */
  runners: Runner[];
  lanes: Lane[];
  gate: Gate;
  /** Stops taking prompts, lets the ones in flight finish (within the grace), then stops. */
  stop(): Promise<void>;
}

export interface WorkerOptions {
  /** Where local time comes from; tests move it across the window's edges. */
  clock?: Clock;
  /** Overrides the crontab file (tests that drive the gate task themselves pass ""). */
  crontab?: string;
}

/** A graphile-worker runner whose pools hold liveness locks and whose running jobs are known (for lost completions). */
interface RunnerSpec {
  queue: JobQueue;
  /** The lane whose prompts this runner takes (none for housekeeping). */
  lane?: Lane;
  concurrency: number;
  taskList: TaskList;
  crontab: { crontab: string } | { crontabFile: string };
  forbiddenFlags?: () => Promise<string[]>;
}

/** Starts the worker on an already-migrated database. */
export async function startWorker(config: Config, pool: Pool, connectionString: string, options: WorkerOptions = {}): Promise<WorkerHandle> {
  registerSecret(config.llm.apiKey);
  // Loaded now, once per process: start-up pays for it, not the first prompt.
  const tokens = getTokenCounter(config.tokenEncoding);
  await tokens.count("warm-up");
  const lanes = config.llm.baseUrls.map((url) => new Lane(config.llm, url, pool));
  // When a completion was last lost; null when there is nothing to free.
  let completionLostAtMs: number | null = null;
  const completionLost = () => {
    completionLostAtMs = Date.now();
  };
  const session = new Session(
    connectionString,
    (server) => lanes.find((lane) => lane.server === server)?.taken(),
    // A PostgreSQL crash can also lose a completion that was acknowledged:
    // the jobs' pool does not wait for the disk (below). Whatever this
    // process still holds and no longer runs is then freed, as for a
    // completion whose query failed.
    completionLost,
  );
  await session.start();
  const promptJobFlag = await readPromptJobFlag(pool);
  const gate = new Gate({ window: config.window, pool, session, clock: options.clock ?? (() => new Date()), promptJobFlag, recheckMs: config.pollIntervalMs });
  setAppContext({ config, pool, gate, session, tokens });
  // The lanes' runners fetch and complete their jobs on a pool of their own
  // whose commits do not wait for the disk (synchronous_commit=off). Each
  // fetch is a commit on the LLM's critical path, and while a bulk
  // statement's jobs are added, waiting for the WAL flush behind them made
  // the LLM wait over 100 ms between two answers. What a crash of PostgreSQL
  // can lose here is only the last fraction of a second of job bookkeeping: a
  // lock (the job runs again) or a completion (the job runs again and finds
  // its row answered). The rows themselves are written on the durable pool.
  const jobsPool = createPool(connectionString, jobsPoolSize(config), { synchronous_commit: "off" });

  // The jobs a lost completion must not free, per queue: those whose task is running.
  const running: Record<JobQueue, Set<string>> = { prompts: new Set(), housekeeping: new Set() };
  const poolIds: Record<JobQueue, Set<string>> = { prompts: new Set(), housekeeping: new Set() };
  const live = { completionLost };
  // What this process opened besides its runners, closed after them.
  const closeConnections = async () => {
    await endPool(jobsPool).catch((error) => log.debug("could not close the jobs' pool", { error: (error as Error).message }));
    await session.close();
    await Promise.all(lanes.map((lane) => lane.close()));
  };

  const startRunner = (spec: RunnerSpec): Promise<Runner> => {
    const events: WorkerEvents = new EventEmitter();
    events.on("pool:create", ({ workerPool }) => {
      poolIds[spec.queue].add(workerPool.id);
      if (spec.lane) spec.lane.poolId = workerPool.id;
      session.holdPoolLock(workerPool.id).catch((error) => log.error("could not take the pool's liveness lock", { error: error.message }));
    });
    events.on("job:start", ({ job }) => running[spec.queue].add(job.id));
    events.on("job:complete", ({ job }) => running[spec.queue].delete(job.id));
    return run({
      pgPool: spec.queue === "prompts" ? jobsPool : pool,
      ...(spec.queue === "housekeeping" ? { schema: HOUSEKEEPING_SCHEMA } : {}),
      concurrency: spec.concurrency,
      noHandleSignals: true,
      pollInterval: config.pollIntervalMs,
      taskList: spec.taskList,
      ...spec.crontab,
      ...(spec.forbiddenFlags ? { forbiddenFlags: spec.forbiddenFlags } : {}),
      logger: graphileLogger(),
      events,
      preset: { worker: { gracefulShutdownAbortTimeout: config.shutdownGraceSeconds * 1000 } },
    });
  };

  const runners: Runner[] = [];
  const stopRunners = () => Promise.all(runners.map((r) => r.stop().catch((error) => log.warn("worker stopped with an error", { error: (error as Error).message }))));
  try {
    runners.push(
      await startRunner({
        queue: "housekeeping",
        concurrency: HOUSEKEEPING_CONCURRENCY,
        taskList: { window_gate: windowGate, enqueue_prompts: enqueuePrompts },
        crontab: options.crontab !== undefined ? { crontab: options.crontab } : { crontabFile: path.join(projectRoot, "crontab") },
      }),
    );
    for (const lane of lanes) {
      runners.push(
        await startRunner({
          queue: "prompts",
          lane,
          concurrency: config.llm.concurrencyPerServer,
          taskList: { process_prompt: processPrompt(lane) },
          // Not the crontab: graphile-worker would otherwise read ./crontab for this runner too.
          crontab: { crontab: "" },
          forbiddenFlags: gate.forbiddenFlagsFor(lane),
        }),
      );
    }
  } catch (error) {
    gate.beginShutdown();
    await stopRunners();
    await closeConnections();
    throw error;
  }

  const reap = async () => {
    try {
      for (const queue of ["prompts", "housekeeping"] as const) {
        const pools = await reapDeadPools(pool, queue, session.ownPoolIds);
        if (pools.length > 0) log.warn(`freed the jobs of ${pools.length} dead worker pool(s); they run again`, { pools, queue });
      }
      if (completionLostAtMs !== null) {
        const lostAtMs = completionLostAtMs;
        for (const queue of ["prompts", "housekeeping"] as const) {
          const jobs = await freeOwnStaleJobs(pool, queue, [...poolIds[queue]], [...running[queue]]);
          if (jobs.length > 0) log.warn(`freed ${jobs.length} job(s) whose completion was lost; they run again, and a prompt already answered is skipped`, { jobs, queue });
        }
        // A job whose completion was just lost is not old enough to free on the
        // first pass (freeOwnStaleJobs's grace), and with several slots one
        // restart can lose several completions of different ages: keep looking
        // for a while, whatever was freed already.
        if (Date.now() - lostAtMs > LOST_COMPLETION_SEARCH_MS && completionLostAtMs === lostAtMs) completionLostAtMs = null;
      }
    } catch (error) {
      log.debug("reaper could not run", { error: (error as Error).message });
    }
  };
  await reap();
  // A worker killed just after a job completed but before its answer was
  // stored (answer_writer.ts) leaves a pendiente row without a job: give it
  // one now rather than at window_gate's next run.
  const orphans = await enqueueOrphans(pool).catch(() => []);
  if (orphans.length > 0) log.warn(`re-enqueued ${orphans.length} pendiente rows that had no live job`, { ids: orphans.slice(0, 20) });
  const reaper = setInterval(reap, REAP_INTERVAL_MS);
  reaper.unref();
  // At start-up, and later at each first prompt of a night.
  for (const lane of lanes) void lane.residency.checkModel();
  const release = setInterval(() => {
    void (async () => {
      try {
        const queueOpen = await gate.isOpen();
        for (const lane of lanes) await lane.residency.releaseIfDone({ queueOpen, llmUp: lane.breaker.current === "up" });
      } catch (error) {
        log.debug("could not check whether to release the model", { error: (error as Error).message });
      }
    })();
  }, RELEASE_CHECK_MS);
  release.unref();
  liveWorkers.add(live);

  let stopping: Promise<void> | null = null;
  return {
    runners,
    lanes,
    gate,
    stop() {
      stopping ??= (async () => {
        gate.beginShutdown();
        clearInterval(reaper);
        clearInterval(release);
        await stopRunners();
        await answersWritten();
        // Until here a lost completion is still absorbed: the job is freed by
        // the next start's reaper, once this process and its locks are gone.
        liveWorkers.delete(live);
        // graphile-worker does not await a job's completion (see above): it may
        // still be on its way when the runners have stopped.
        await poolIdle(jobsPool, JOBS_POOL_DRAIN_MS);
        await closeConnections();
        setAppContext(null);
      })();
      return stopping;
    },
  };
}
