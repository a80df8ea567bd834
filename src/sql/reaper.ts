/**
 * Frees the jobs of dead worker pools. graphile-worker's own sweep only frees
 * locks older than 4 hours; a pool that holds its liveness lock (session.ts)
 * is alive, so its jobs are never touched, whoever runs this.
 */
import { LIVENESS_LOCK_CLASS } from "../session";
import type { Queryable } from "./queryable";

// A pool takes its liveness lock just after graphile-worker creates it; this
// covers the instant between its first job lock and that.
const GRACE_SECONDS = 5;

/**
 * Unlocks jobs locked by pools whose liveness lock is gone; returns those pool
 * ids. `ownPoolIds` are the caller's own pools: never reaped, even in the
 * moment after a database restart before the caller's session re-takes its locks.
 */
export async function reapDeadPools(db: Queryable, ownPoolIds: string[] = []): Promise<string[]> {
  const { rows } = await db.query(
    `WITH dead AS (
       SELECT DISTINCT j.locked_by
         FROM graphile_worker._private_jobs j
        WHERE j.locked_by IS NOT NULL
          AND j.locked_at < now() - make_interval(secs => $2)
          AND j.locked_by <> ALL($3::text[])
          AND NOT EXISTS (
                SELECT 1 FROM pg_locks l
                 WHERE l.locktype = 'advisory' AND l.granted
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.classid = $1::int::oid
                   AND l.objid::bigint = (hashtext(j.locked_by)::bigint & 4294967295)
                   AND l.objsubid = 2))
     SELECT array_agg(locked_by) AS pools, graphile_worker.force_unlock_workers(array_agg(locked_by))
       FROM dead HAVING count(*) > 0`,
    [LIVENESS_LOCK_CLASS, GRACE_SECONDS, ownPoolIds],
  );
  return rows[0]?.pools ?? [];
}

/**
 * Unlocks the jobs that the caller's own pools still hold but no longer run:
 * what a lost completion leaves behind (see absorbDatabaseRejection in
 * worker.ts). graphile-worker has no public function that frees one job of a
 * live pool (force_unlock_workers frees them all, the one running included),
 * hence the direct UPDATE. A job locked less than GRACE_SECONDS ago may be
 * one just fetched and not yet started, so it is left alone.
 */
export async function freeOwnStaleJobs(db: Queryable, ownPoolIds: string[], runningJobIds: string[]): Promise<string[]> {
  const { rows } = await db.query(
    `UPDATE graphile_worker._private_jobs SET locked_by = NULL, locked_at = NULL
      WHERE locked_by = ANY($1::text[])
        AND locked_at < now() - make_interval(secs => $2)
        AND id <> ALL($3::bigint[])
     RETURNING id::text AS id`,
    [ownPoolIds, GRACE_SECONDS, runningJobIds],
  );
  return rows.map((r) => r.id);
}
