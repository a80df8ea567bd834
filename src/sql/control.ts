/** Queries on fila_llm_control, the operators' steering state, and on the queue's shape. */
import type { Queryable } from "./queryable";

export interface ControlState {
  paused: boolean;
  openUntil: Date | null;
}

export async function readControl(db: Queryable): Promise<ControlState> {
  const { rows } = await db.query("SELECT paused, open_until FROM fila_llm_control");
  return { paused: rows[0]?.paused ?? false, openUntil: rows[0]?.open_until ?? null };
}

/**
 * Records the window state the gate sees; returns true only for the one call
 * (across all processes) that observes a change, so each change is logged once.
 */
export async function recordWindowState(db: Queryable, open: boolean): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE fila_llm_control SET window_open = $1, window_changed_at = now()
      WHERE window_open IS DISTINCT FROM $1`,
    [open],
  );
  return rowCount === 1;
}

export async function countPending(db: Queryable): Promise<number> {
  const { rows } = await db.query("SELECT count(*)::int AS n FROM fila_llm_anahuac WHERE estatus = 'pendiente'");
  return rows[0].n;
}

/**
 * Re-enqueues 'pendiente' rows that have no live job: none with their key, or
 * only one that graphile-worker gave up on. Nothing may stay silently stuck.
 * Waits while a bulk statement's jobs are still being added (enqueue_prompts),
 * whose rows would look orphaned and lose their FIFO place.
 */
export async function enqueueOrphans(db: Queryable): Promise<number[]> {
  const { rows } = await db.query(
    `WITH orphans AS (
       SELECT a.id FROM fila_llm_anahuac a
        WHERE a.estatus = 'pendiente'
          AND NOT EXISTS (SELECT 1 FROM graphile_worker._private_jobs j
                           WHERE j.key = fila_llm_job_key(a.id) AND j.attempts < j.max_attempts)
          AND NOT EXISTS (SELECT 1 FROM graphile_worker._private_jobs j
                            JOIN graphile_worker._private_tasks t ON t.id = j.task_id
                           WHERE t.identifier = 'enqueue_prompts' AND j.attempts < j.max_attempts))
     SELECT array_agg(id ORDER BY id) AS ids, fila_llm_enqueue(array_agg(id ORDER BY id)) FROM orphans`,
  );
  return rows[0].ids ?? [];
}
