/**
 * What window_gate logs about the night besides the opening: a progress line
 * every few minutes while the queue is open, and a one-line summary when it
 * closes. Each line is claimed in fila_llm_control, so only one process logs it.
 */
import { formatLocal } from "../local_time";
import type { Fields } from "../log";
import { claimProgressLine } from "../sql/control";
import type { Queryable } from "../sql/queryable";
import { databaseNow, queueCounts, runStats } from "../sql/reports";
import { nextWindowChange, type WindowSpec } from "../window";
import { ONE_SLOT, slotCount, type LlmSlots } from "./report";
import { formatDuration } from "./text";

// Often enough to see a stall within the hour under `pm2 logs`, rare enough
// that a 5-hour night logs 20 lines, not hundreds.
export const PROGRESS_EVERY_MINUTES = 15;

export interface LogLine {
  message: string;
  fields: Fields;
}

/** The progress line, if one is due now (and this caller claimed it); else null. */
export async function progressLine(db: Queryable, window: WindowSpec, slots: LlmSlots = ONE_SLOT, everyMinutes = PROGRESS_EVERY_MINUTES): Promise<LogLine | null> {
  const openedAt = await claimProgressLine(db, everyMinutes);
  if (openedAt === null) return null;
  // The database's clock: the span is compared with fecha_out, which it wrote.
  const now = await databaseNow(db);
  const stats = await runStats(db, [{ opensAt: openedAt, closesAt: now }]);
  const remaining = (await queueCounts(db)).pendiente;
  const done = stats.listo + stats.errors;
  // Mean LLM time per prompt so far tonight (tonight's model and prompts), shared by every slot.
  const etaSeconds = done > 0 ? (remaining * stats.busySeconds) / done / slotCount(slots) : null;
  let eta = "ETA unknown (nothing finished yet)";
  if (etaSeconds !== null) {
    const at = new Date(now.getTime() + etaSeconds * 1000);
    const change = nextWindowChange(now, window);
    const late = change !== null && !change.opens && at > change.at;
    eta = `ETA ${formatLocal(at, window.timeZone)} ${window.timeZone} (in ${formatDuration(etaSeconds)})` +
      (late ? `, after the window closes at ${formatLocal(change.at, window.timeZone)}` : "");
  }
  return {
    message: `progress: ${done} done (${stats.listo} listo, ${stats.errors} error), ${remaining} remaining, ${eta}`,
    fields: { done, listo: stats.listo, errors: stats.errors, remaining, etaSeconds: etaSeconds === null ? null : Math.round(etaSeconds) },
  };
}

/** The one-line summary of the period the queue was open, from `openedAt` until now. */
export async function summaryLine(db: Queryable, openedAt: Date, slots: LlmSlots = ONE_SLOT): Promise<LogLine> {
  const now = await databaseNow(db);
  const stats = await runStats(db, [{ opensAt: openedAt, closesAt: now }]);
  const remaining = (await queueCounts(db)).pendiente;
  const openSeconds = Math.max(1, (now.getTime() - openedAt.getTime()) / 1000);
  const busy = Math.round((stats.busySeconds / (openSeconds * slotCount(slots))) * 100);
  const median = stats.medianSeconds === null ? "–" : `${stats.medianSeconds.toFixed(1)} s`;
  return {
    message:
      `night summary: ${stats.listo} listo, ${stats.errors} error in ${formatDuration(openSeconds)} open; ` +
      `tokens in ${stats.tokensIn} / out ${stats.tokensOut}; median ${median}; LLM busy ${busy}%; ${remaining} still pendiente`,
    fields: {
      listo: stats.listo,
      errors: stats.errors,
      tokensIn: stats.tokensIn,
      tokensOut: stats.tokensOut,
      busySeconds: Math.round(stats.busySeconds),
      openSeconds: Math.round(openSeconds),
      remaining,
    },
  };
}
