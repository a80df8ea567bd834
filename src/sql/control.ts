/**
 * Every query on fila_llm_control: the operators' steering (pause, resume,
 * open-now, each a SQL function of migrations/0007 that SQL users call too)
 * and window_gate's bookkeeping of the queue's open periods.
 */
import type { Queryable } from "./queryable";

export interface ControlState {
  paused: boolean;
  openUntil: Date | null;
}

export async function readControl(db: Queryable): Promise<ControlState> {
  const { rows } = await db.query("SELECT paused, open_until FROM fila_llm_control");
  return { paused: rows[0]?.paused ?? false, openUntil: rows[0]?.open_until ?? null };
}

/** fila_llm_pause. */
export async function pauseQueue(db: Queryable): Promise<void> {
  await db.query("SELECT fila_llm_pause()");
}

/** fila_llm_resume: unpaused, and any open-now ended. */
export async function resumeQueue(db: Queryable): Promise<void> {
  await db.query("SELECT fila_llm_resume()");
}

/** fila_llm_open_now: open outside the window for this long; returns until when. */
export async function openQueueNow(db: Queryable, seconds: number): Promise<Date> {
  const { rows } = await db.query("SELECT fila_llm_open_now(make_interval(secs => $1)) AS until", [seconds]);
  return rows[0].until;
}

// --- The queue's open periods, for window_gate's opening, progress and summary lines.

/**
 * Records the queue state the gate sees; returns true only for the one call
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

export interface OpenPeriod {
  /** The state window_gate last recorded (null before its first run). */
  open: boolean | null;
  /** When it last changed, by the database's clock. */
  since: Date | null;
}

export async function readOpenPeriod(db: Queryable): Promise<OpenPeriod> {
  const { rows } = await db.query("SELECT window_open, window_changed_at FROM fila_llm_control");
  return { open: rows[0]?.window_open ?? null, since: rows[0]?.window_changed_at ?? null };
}

/**
 * Claims the next progress line: true for exactly one caller (across all
 * processes) once the queue has been open `everyMinutes` since it opened or
 * since the last line. Returns the opening instant when claimed.
 */
export async function claimProgressLine(db: Queryable, everyMinutes: number): Promise<Date | null> {
  const { rows } = await db.query(
    `UPDATE fila_llm_control SET progress_logged_at = now()
      WHERE window_open
        AND greatest(progress_logged_at, window_changed_at) <= now() - make_interval(mins => $1)
      RETURNING window_changed_at`,
    [everyMinutes],
  );
  return rows[0]?.window_changed_at ?? null;
}
