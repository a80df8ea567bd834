/**
 * enqueue_prompts: adds the process_prompt jobs of bulk statements (over 1,000
 * rows; see migrations/0004_enqueue.sql) in batches, oldest id first, so that
 * a big INSERT … SELECT stays almost as fast as with no trigger at all.
 *
 * Each batch commits on its own and only takes rows that still have no live
 * job, so a crash half-way loses nothing: graphile-worker retries the job and
 * it carries on where it stopped.
 */
import type { Task } from "graphile-worker";
import { logger } from "../src/log";
import { enqueueRange } from "../src/sql/jobs";

declare global {
  namespace GraphileWorker {
    interface Tasks {
      /** One range per bulk statement: graphile-worker appends them under one job key. */
      enqueue_prompts: { from: number; to: number; at: string }[];
    }
  }
}

const log = logger("enqueue");

// Large enough to amortise each add_jobs call, small enough that one batch
// (~80 ms) never holds the worker long between two prompts.
export const BATCH_ROWS = 5_000;

function isRange(value: unknown): value is { from: number; to: number; at: string } {
  const r = value as { from?: unknown; to?: unknown; at?: unknown } | null;
  return typeof r === "object" && r !== null && Number.isInteger(r.from) && Number.isInteger(r.to) && typeof r.at === "string";
}

const enqueuePrompts: Task<"enqueue_prompts"> = async (payload, helpers) => {
  const ranges = Array.isArray(payload) ? payload.filter(isRange) : [];
  if (ranges.length === 0) {
    log.error("job skipped: payload must be a list of {from, to, at}", { jobId: helpers.job.id, payload });
    return;
  }
  for (const { from, to, at } of ranges) {
    let batches = 0;
    for (let next = from; next <= to; ) {
      const last = await helpers.withPgClient((db) => enqueueRange(db, next, to, at, BATCH_ROWS));
      if (last === null) break;
      batches += 1;
      next = last + 1;
    }
    log.info(`enqueued the prompts of a bulk statement, ids ${from}–${to}`, { from, to, batches });
  }
};

export default enqueuePrompts;
