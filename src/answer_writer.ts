/**
 * Write-behind for answers. The LLM sits idle from the end of one answer to
 * the start of the next request, so the answer's UPDATE (the slowest step of
 * that gap, ~0.75 ms here) runs while the next prompt is fetched and sent.
 *
 * What this costs, and why it keeps the guarantees: the job is completed
 * before its answer is stored. If the process dies in that millisecond, the
 * row stays 'pendiente' without a job; window_gate re-enqueues it within a
 * minute and the prompt runs again. Nothing is lost and nothing stays stuck.
 *
 * A few answers may wait at once, each on its own connection: an answer is
 * durable only once the disk has its WAL, and while a bulk statement's jobs
 * are being added that flush took 60 to 90 ms here, longer than a short
 * answer; with one write at a time the LLM waited for it. Stopping the worker
 * waits for every one.
 */
import { logger } from "./log";

const log = logger("prompt");

// Enough to ride out a slow disk flush of a few answers' length; small
// enough that the answers held in memory meanwhile stay a handful.
export const MAX_WAITING_ANSWERS = 4;

const writing = new Set<Promise<void>>();

/** Starts `write` once fewer than MAX_WAITING_ANSWERS answers are being stored; resolves when it has started. */
export async function writeBehind(id: number, write: () => Promise<void>): Promise<void> {
  while (writing.size >= MAX_WAITING_ANSWERS) await Promise.race(writing);
  const done: Promise<void> = write()
    .catch((error) => {
      log.error(`prompt ${id}: its answer could not be written; it stays pendiente and runs again`, {
        id,
        error: (error as Error).message,
      });
    })
    .finally(() => writing.delete(done));
  writing.add(done);
}

/** Resolves when every answer handed to writeBehind is stored (or has failed). */
export async function answersWritten(): Promise<void> {
  while (writing.size > 0) await Promise.all(writing);
}
