/**
 * Starts one worker process's graphile-worker runner with its gate, its
 * database session (leader and liveness locks) and the dead-pool reaper.
 */
import { EventEmitter } from "node:events";
import path from "node:path";
import type { Pool } from "pg";
import { run, type Runner, type WorkerEvents } from "graphile-worker";
import enqueuePrompts from "../tasks/enqueue_prompts";
import processPrompt from "../tasks/process_prompt";
import windowGate from "../tasks/window_gate";
import { answersWritten } from "./answer_writer";
import { redactUrl, type Config } from "./config";
import { setAppContext } from "./context";
import { Gate, type Clock } from "./gate";
import { createLlmClient } from "./llm/client";
import { ModelResidency } from "./llm/model_residency";
import { OutageBreaker } from "./llm/outage_breaker";
import { serverStateRecorder } from "./llm/server_state";
import { graphileLogger, logger, registerSecret } from "./log";
import { projectRoot } from "./paths";
import { Session } from "./session";
import { isDatabaseUnavailable } from "./db";
import { enqueueOrphans, freeOwnStaleJobs, readPromptJobFlag, reapDeadPools } from "./sql/jobs";
import { getTokenCounter } from "./tokens/index";

const log = logger("worker");

// With the reaper's 5 s grace, a killed worker's prompt runs again within ~10 s.
const REAP_INTERVAL_MS = 5_000;
// How often the model's release is considered: an unload arrives within this of the window's end.
const RELEASE_CHECK_MS = 5_000;
// Past the reaper's grace and two passes more: by then a lost completion's job has been freed.
const LOST_COMPLETION_SEARCH_MS = 20_000;

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

export interface WorkerHandle {
  runner: Runner;
  gate: Gate;
  /** Stops taking prompts, lets the one in flight finish (within the grace), then stops. */
  stop(): Promise<void>;
}

export interface WorkerOptions {
  /** Where local time comes from; tests move it across the window's edges. */
  clock?: Clock;
  /** Overrides the crontab file (tests that drive the gate task themselves pass ""). */
  crontab?: string;
}

/** Starts the worker on an already-migrated database. */
export async function startWorker(config: Config, pool: Pool, connectionString: string, options: WorkerOptions = {}): Promise<WorkerHandle> {
  registerSecret(config.llm.apiKey);
  // Loaded now, once per process: start-up pays for it, not the first prompt.
  const tokens = getTokenCounter(config.tokenEncoding);
  await tokens.count("warm-up");
  const llm = createLlmClient(config.llm, config.llm.baseUrls[0]);
  const serverState = serverStateRecorder(pool, redactUrl(config.llm.baseUrls[0]));
  const breaker = new OutageBreaker(config.llm.outageMaxBackoffSeconds, Date.now, serverState.breakerChanged);
  const residency = new ModelResidency(llm, config.llm, serverState.residency);
  const session = new Session(connectionString);
  await session.start();
  const promptJobFlag = await readPromptJobFlag(pool);
  const gate = new Gate({ window: config.window, pool, session, breaker, clock: options.clock ?? (() => new Date()), promptJobFlag });
  setAppContext({ config, llm, breaker, gate, session, tokens, residency });

  const events: WorkerEvents = new EventEmitter();
  events.on("pool:create", ({ workerPool }) => {
    session.holdPoolLock(workerPool.id).catch((error) => log.error("could not take the pool's liveness lock", { error: error.message }));
  });
  // The jobs a lost completion must not free: those whose task is running.
  const runningJobIds = new Set<string>();
  events.on("job:start", ({ job }) => runningJobIds.add(job.id));
  events.on("job:complete", ({ job }) => runningJobIds.delete(job.id));
  // When a completion was last lost; null when there is nothing to free.
  let completionLostAtMs: number | null = null;
  const live = { completionLost: () => (completionLostAtMs = Date.now()) };

  const runner = await run({
    pgPool: pool,
    concurrency: 1,
    noHandleSignals: true,
    pollInterval: config.pollIntervalMs,
    taskList: { process_prompt: processPrompt, window_gate: windowGate, enqueue_prompts: enqueuePrompts },
    ...(options.crontab !== undefined ? { crontab: options.crontab } : { crontabFile: path.join(projectRoot, "crontab") }),
    forbiddenFlags: gate.forbiddenFlags,
    logger: graphileLogger(),
    events,
    preset: { worker: { gracefulShutdownAbortTimeout: config.shutdownGraceSeconds * 1000 } },
  });

  const reap = async () => {
    try {
      const pools = await reapDeadPools(pool, session.ownPoolIds);
      if (pools.length > 0) log.warn(`freed the jobs of ${pools.length} dead worker pool(s); their prompts run again`, { pools });
      if (completionLostAtMs !== null) {
        const lostAtMs = completionLostAtMs;
        const jobs = await freeOwnStaleJobs(pool, session.ownPoolIds, [...runningJobIds]);
        if (jobs.length > 0) log.warn(`freed ${jobs.length} job(s) whose completion was lost; they run again, and a prompt already answered is skipped`, { jobs });
        // A job whose completion was just lost is not old enough to free on the
        // first pass (freeOwnStaleJobs's grace); keep looking for a while.
        if ((jobs.length > 0 || Date.now() - lostAtMs > LOST_COMPLETION_SEARCH_MS) && completionLostAtMs === lostAtMs) completionLostAtMs = null;
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
  void residency.checkModel();
  const release = setInterval(() => {
    void (async () => {
      try {
        await residency.releaseIfDone({ queueOpen: await gate.isOpen(), llmUp: breaker.current === "up" });
      } catch (error) {
        log.debug("could not check whether to release the model", { error: (error as Error).message });
      }
    })();
  }, RELEASE_CHECK_MS);
  release.unref();
  liveWorkers.add(live);

  let stopping: Promise<void> | null = null;
  return {
    runner,
    gate,
    stop() {
      stopping ??= (async () => {
        gate.beginShutdown();
        clearInterval(reaper);
        clearInterval(release);
        await runner.stop().catch((error) => log.warn("worker stopped with an error", { error: (error as Error).message }));
        await answersWritten();
        // Until here a lost completion is still absorbed: the job is freed by
        // the next start's reaper, once this process and its locks are gone.
        liveWorkers.delete(live);
        await session.close();
        await llm.close().catch(() => {});
        setAppContext(null);
      })();
      return stopping;
    },
  };
}
