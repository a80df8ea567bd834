/**
 * enqueue_prompts: adds the process_prompt jobs of bulk statements (over 1,000
 * rows; see migrations/0004_enqueue.sql) in batches, oldest id first, so that
 * a big INSERT … SELECT stays almost as fast as with no trigger at all.
 *
 * Each batch commits on its own and only takes rows that still have no live
 * job, so a crash half-way loses nothing: graphile-worker retries the job and
 * it carries on where it stopped.
 *
 * It runs in the housekeeping runner, beside the prompts (src/worker.ts), so
 * the LLM keeps answering meanwhile. What it must not do is flood the
 * write-ahead log: every answer's commit waits for the disk to take the WAL
 * written before it, and back-to-back batches of 5,000 jobs made that wait
 * 60–100 ms here, longer than a short answer. So the batches are small and
 * it rests twice as long as each took: a 1,000,000-row INSERT gets its jobs
 * in about 2 minutes here, far ahead of what any LLM answers, and the LLM's
 * largest gap meanwhile was 47–51 ms (docs/benchmarks.md, section 8).
 */
import type { Task } from "graphile-worker";
import { appContext } from "../src/context";
import { retryWhileDatabaseAway, sleep, withClient } from "../src/db";
import { logger } from "../src/log";
import { enqueueRange, requeueBulkRanges } from "../src/sql/jobs";

declare global {
  namespace GraphileWorker {
    interface Tasks {
      /** The id ranges of the statements to enqueue, in order (one per statement). */
      enqueue_prompts: { from: number; to: number; at: string }[];
    }
  }
}

const log = logger("enqueue");

// Large enough to amortise each add_jobs call, small enough that one batch's
// WAL never makes an answer's commit wait long.
export const BATCH_ROWS = 1_000;
// Rest this many times as long as the last batch took: the WAL then grows at
// a third of the rate a tight loop writes it.
const REST_FACTOR = 2;

function isRange(value: unknown): value is { from: number; to: number; at: string } {
  const r = value as { from?: unknown; to?: unknown; at?: unknown } | null;
  return typeof r === "object" && r !== null && Number.isInteger(r.from) && Number.isInteger(r.to) && typeof r.at === "string";
}

// A database restart takes seconds; past this the job fails, and graphile-worker retries it.
const DATABASE_WAIT_MAX_SECONDS = 600;

const enqueuePrompts: Task<"enqueue_prompts"> = async (payload, helpers) => {
  const ranges = Array.isArray(payload) ? payload.filter(isRange) : [];
  if (ranges.length === 0) {
    log.error("job skipped: payload must be a list of {from, to, at}", { jobId: helpers.job.id, payload });
    return;
  }
  const { gate, pool } = appContext();
  const stopping = () => gate.isShuttingDown || helpers.abortSignal?.aborted === true;
  for (const [i, { from, to, at }] of ranges.entries()) {
    let batches = 0;
    for (let next = from; next <= to; ) {
      if (stopping()) {
        // What is left goes back first in line (this job's run_at), so no later statement overtakes it.
        const left = [{ from: next, to, at }, ...ranges.slice(i + 1)];
        await withClient(pool, (db) => requeueBulkRanges(db, left, helpers.job.run_at));
        log.info(`stopping: the prompts of ids ${next}–${to} and after get their jobs at the next start`, { from: next, to });
        return;
      }
      const startedMs = performance.now();
      const last = await retryWhileDatabaseAway(`adding the jobs of ids ${next}–${to}`, () => helpers.withPgClient((db) => enqueueRange(db, next, to, at, BATCH_ROWS)), {
        log,
        maxWaitSeconds: DATABASE_WAIT_MAX_SECONDS,
        signal: helpers.abortSignal,
      });
      if (last === null) break;
      batches += 1;
      next = last + 1;
      await sleep(REST_FACTOR * (performance.now() - startedMs), helpers.abortSignal);
    }
    log.info(`enqueued the prompts of a bulk statement, ids ${from}–${to}`, { from, to, batches });
  }
};

export default enqueuePrompts;
