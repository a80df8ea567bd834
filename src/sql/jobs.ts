/**
 * Queries on graphile-worker's jobs: putting a prompt back in the queue,
 * adding a bulk statement's jobs, repairing rows that lost theirs, freeing
 * the jobs of dead workers, and what is running now. A prompt's job itself
 * is defined once, in SQL (migrations/0008_prompt_job.sql).
 */
import { HOUSEKEEPING_SCHEMA, PROMPTS_SCHEMA } from "../queues";
import { LIVENESS_LOCK_CLASS } from "../session";
import type { Queryable } from "./queryable";

/** The two graphile-worker queues: the prompts' (graphile_worker) and the housekeeping jobs' (src/migrate.ts). */
export type JobQueue = "prompts" | "housekeeping";

// Schema names are constants, never input: safe to write into the query text.
const SCHEMA: Record<JobQueue, string> = { prompts: PROMPTS_SCHEMA, housekeeping: HOUSEKEEPING_SCHEMA };

/** The flag every process_prompt job carries; the gate forbids it while the queue is closed. */
export async function readPromptJobFlag(db: Queryable): Promise<string> {
  const { rows } = await db.query("SELECT fila_llm_prompt_job_flag() AS flag");
  return rows[0].flag;
}

/**
 * Puts the prompt back in the queue as a fresh job (graphile-worker's own
 * attempt count and exp() backoff are not used; see src/failure_policy.ts):
 * at its old run_at to keep its place, or later for a retry.
 */
export async function requeuePrompt(db: Queryable, id: number, failures: number, runAt: Date): Promise<void> {
  await db.query("SELECT fila_llm_requeue($1, $2, $3)", [id, failures, runAt]);
}

/**
 * Puts a bulk statement's ranges not yet done back in the housekeeping queue,
 * due at `runAt` (the stopped job's own), so that they still come before any
 * later statement's.
 */
export async function requeueBulkRanges(db: Queryable, ranges: { from: number; to: number; at: string }[], runAt: Date): Promise<void> {
  await db.query(`SELECT ${HOUSEKEEPING_SCHEMA}.add_job('enqueue_prompts', $1::json, run_at := $2)`, [JSON.stringify(ranges), runAt]);
}

/**
 * Enqueues one batch of a bulk statement's rows (ids from..to that still have
 * no live job), FIFO as of `newestRunAt` (kept as PostgreSQL's text: a JS Date
 * would drop its microseconds). Returns the last id done, or null
 * when the range is finished.
 */
export async function enqueueRange(db: Queryable, fromId: number, toId: number, newestRunAt: string, maxRows: number): Promise<number | null> {
  const { rows } = await db.query("SELECT fila_llm_enqueue_range($1, $2, $3::timestamptz, $4) AS last", [fromId, toId, newestRunAt, maxRows]);
  return rows[0].last;
}

// How many of the oldest pendiente rows the orphan repair looks at: far more
// than the prompts in flight and in retry together, and a few milliseconds of
// index probes whatever the backlog.
export const ORPHAN_HEAD_ROWS = 1_000;

/**
 * Re-enqueues 'pendiente' rows that have no live job (none with their key, or
 * only one that graphile-worker gave up on), so that nothing stays silently
 * stuck. It looks only at the queue's head, the ORPHAN_HEAD_ROWS oldest
 * pendiente rows (the partial index on pending rows): a row that lost its job
 * matters once every older row is done, and it is then at the head; so the
 * repair costs the same at 10,000,000 pending rows as at 10.
 *
 * An orphan goes back in its FIFO place: just before the jobs of the rows
 * after it at the head, or else just after those before it, or else (the
 * whole head lost its jobs) at the front of the queue; several orphans one
 * microsecond apart, in id order. Waits while a bulk statement's jobs are
 * still being added (enqueue_prompts), whose rows would look orphaned.
 */
export async function enqueueOrphans(db: Queryable, headRows = ORPHAN_HEAD_ROWS): Promise<number[]> {
  const { rows } = await db.query(
    `WITH head AS (
       SELECT a.id,
              (SELECT j.run_at FROM graphile_worker._private_jobs j
                WHERE j.key = fila_llm_job_key(a.id) AND j.attempts < j.max_attempts) AS job_run_at
         FROM fila_llm_anahuac a
        WHERE a.estatus = 'pendiente'
          AND NOT fila_llm_bulk_enqueue_pending()
        ORDER BY a.id
        LIMIT $1),
     neighbours AS (
       SELECT id, job_run_at,
              -- Frames that start at the partition's start, so each is one pass.
              min(job_run_at) OVER (ORDER BY id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS next_at,
              max(job_run_at) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_at
         FROM head),
     orphans AS (
       SELECT id, next_at, prev_at FROM neighbours WHERE job_run_at IS NULL),
     front AS (
       SELECT coalesce((SELECT run_at FROM graphile_worker._private_jobs WHERE is_available ORDER BY priority, run_at LIMIT 1), now()) AS at),
     placed AS (
       SELECT o.id,
              CASE WHEN o.next_at IS NOT NULL
                     THEN o.next_at - (count(*) OVER before_next - row_number() OVER before_next + 1) * interval '1 microsecond'
                   WHEN o.prev_at IS NOT NULL
                     THEN o.prev_at + row_number() OVER after_prev * interval '1 microsecond'
                   ELSE f.at - (count(*) OVER whole - row_number() OVER whole + 1) * interval '1 microsecond'
              END AS run_at
         FROM orphans o, front f
       WINDOW before_next AS (PARTITION BY o.next_at ORDER BY o.id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING),
              after_prev AS (PARTITION BY o.next_at IS NULL, o.prev_at ORDER BY o.id),
              whole AS (PARTITION BY o.next_at IS NULL, o.prev_at IS NULL ORDER BY o.id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING))
     SELECT array_agg(id ORDER BY id) AS ids,
            graphile_worker.add_jobs(array_agg(fila_llm_prompt_job(id, 0, run_at) ORDER BY id))
       FROM placed
     HAVING count(*) > 0`,
    [headRows],
  );
  return rows[0]?.ids ?? [];
}

export interface RunningPrompt {
  promptId: number;
  /** Since its job was locked, by the database's clock. */
  seconds: number;
  lockedBy: string;
}

/** The prompts whose jobs are locked right now: the one being processed. */
export async function runningPrompts(db: Queryable): Promise<RunningPrompt[]> {
  const { rows } = await db.query(
    `SELECT prompt_id, extract(epoch FROM now() - locked_at)::float8 AS seconds, locked_by
       FROM fila_llm_jobs WHERE locked_at IS NOT NULL ORDER BY locked_at`,
  );
  return rows.map((r) => ({ promptId: r.prompt_id, seconds: r.seconds, lockedBy: r.locked_by }));
}

// --- Crash recovery. graphile-worker's own sweep only frees locks older than
// 4 hours; a pool that holds its liveness lock (session.ts) is alive, so its
// jobs are never touched, whoever runs these.

// A pool takes its liveness lock just after graphile-worker creates it; this
// covers the instant between its first job lock and that.
const REAP_GRACE_SECONDS = 5;

/**
 * Unlocks the jobs of `queue` locked by pools whose liveness lock is gone;
 * returns those pool ids. `ownPoolIds` are the caller's own pools: never
 * reaped, even in the moment after a database restart before the caller's
 * session re-takes its locks. Reads only locked jobs (the index of
 * migrations/0014), whatever the backlog.
 */
export async function reapDeadPools(db: Queryable, queue: JobQueue, ownPoolIds: string[] = []): Promise<string[]> {
  const { rows } = await db.query(
    `WITH dead AS (
       SELECT DISTINCT j.locked_by
         FROM ${SCHEMA[queue]}._private_jobs j
        WHERE j.locked_at < now() - make_interval(secs => $2)
          AND j.locked_by <> ALL($3::text[])
          AND NOT EXISTS (
                SELECT 1 FROM pg_locks l
                 WHERE l.locktype = 'advisory' AND l.granted
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.classid = $1::int::oid
                   AND l.objid::bigint = (hashtext(j.locked_by)::bigint & 4294967295)
                   AND l.objsubid = 2))
     SELECT array_agg(locked_by) AS pools, ${SCHEMA[queue]}.force_unlock_workers(array_agg(locked_by))
       FROM dead HAVING count(*) > 0`,
    [LIVENESS_LOCK_CLASS, REAP_GRACE_SECONDS, ownPoolIds],
  );
  return rows[0]?.pools ?? [];
}

/**
 * Unlocks the jobs of `queue` that the caller's own pools still hold but no
 * longer run: what a lost completion leaves behind (see
 * absorbDatabaseRejection in worker.ts). graphile-worker has no public
 * function that frees one job of a live pool (force_unlock_workers frees them
 * all, the one running included), hence the direct UPDATE. A job locked less
 * than REAP_GRACE_SECONDS ago may be one just fetched and not yet started, so
 * it is left alone.
 */
export async function freeOwnStaleJobs(db: Queryable, queue: JobQueue, ownPoolIds: string[], runningJobIds: string[]): Promise<string[]> {
  const { rows } = await db.query(
    `UPDATE ${SCHEMA[queue]}._private_jobs SET locked_by = NULL, locked_at = NULL
      WHERE locked_at < now() - make_interval(secs => $2)
        AND locked_by = ANY($1::text[])
        AND id <> ALL($3::bigint[])
     RETURNING id::text AS id`,
    [ownPoolIds, REAP_GRACE_SECONDS, runningJobIds],
  );
  return rows.map((r) => r.id);
}
