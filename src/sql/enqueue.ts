/** Enqueueing from the worker side (the triggers do the rest, in migrations/0004_enqueue.sql). */
import type { Queryable } from "./queryable";

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
