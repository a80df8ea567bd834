/**
 * Nights: what the status screen and the morning report call "night
 * YYYY-MM-DD" (local wall-clock time itself is src/local_time.ts).
 *
 * Night D is the window that opens on local date D: it opens at WINDOW_START
 * on D and closes at WINDOW_END on D, or on D+1 when the window crosses
 * midnight (22:00–06:00 opened on the 27th is night 2026-11-27). A prompt
 * belongs to a night if its run overlaps it: it finished at or after the
 * opening and started (fecha_out − tiempo_ejecucion) before the closing, so
 * the prompt still running at 06:00 counts for the night it started in.
 */
import { addDays, localInstant, localParts } from "../local_time";
import type { WindowSpec } from "../window";

export interface Night {
  /** The local date the window opens on, YYYY-MM-DD. */
  date: string;
  opensAt: Date;
  closesAt: Date;
}

/** The bounds of night `date` (see the file comment). */
export function nightOf(date: string, window: WindowSpec): Night {
  const closesNextDay = window.endMinutes <= window.startMinutes;
  return {
    date,
    opensAt: localInstant(date, window.startMinutes, window.timeZone),
    closesAt: localInstant(closesNextDay ? addDays(date, 1) : date, window.endMinutes, window.timeZone),
  };
}

/** The most recent night that has closed at `now`. */
export function lastClosedNight(now: Date, window: WindowSpec): Night {
  let date = localParts(now, window.timeZone).date;
  for (;;) {
    const night = nightOf(date, window);
    if (night.closesAt <= now) return night;
    date = addDays(date, -1);
  }
}

/** The night that is open at `now`, or else the next one to open. */
export function currentOrNextNight(now: Date, window: WindowSpec): Night {
  let date = addDays(localParts(now, window.timeZone).date, -1);
  for (;;) {
    const night = nightOf(date, window);
    if (night.closesAt > now) return night;
    date = addDays(date, 1);
  }
}

/** The `count` most recent closed nights, newest first. */
export function recentNights(now: Date, window: WindowSpec, count: number): Night[] {
  const last = lastClosedNight(now, window);
  return Array.from({ length: count }, (_, i) => nightOf(addDays(last.date, -i), window));
}
