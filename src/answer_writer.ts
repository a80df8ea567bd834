/**
 * Write-behind for answers. The LLM sits idle from the end of one answer to
 * the start of the next request, so the answer's UPDATE (the slowest step of
 * that gap, ~0.75 ms here) runs while the next prompt is fetched and sent.
 *
 * What this costs, and why it keeps the guarantees: the job is completed
 * before its answer is stored. If the process dies in that millisecond, the
 * row stays 'pendiente' without a job; window_gate re-enqueues it within a
 * minute and the prompt runs again. Nothing is lost and nothing stays stuck.
 * At most one answer waits at a time, and stopping the worker waits for it.
 */
import { logger } from "./log";

const log = logger("prompt");

let pending: Promise<void> = Promise.resolve();

/** Starts `write` once the previous answer is stored; resolves when it has started. */
export async function writeBehind(id: number, write: () => Promise<void>): Promise<void> {
  await pending;
  pending = write().catch((error) => {
    log.error(`prompt ${id}: its answer could not be written; it stays pendiente and runs again`, {
      id,
      error: (error as Error).message,
    });
  });
}

/** Resolves when every answer handed to writeBehind is stored (or has failed). */
export function answersWritten(): Promise<void> {
  return pending;
}
