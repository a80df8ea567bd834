/**
 * Nights: what the status screen and the morning report call "night
 * YYYY-MM-DD", and how local wall-clock times in WINDOW_TZ map to instants.
 *
 * Night D is the window that opens on local date D: it opens at WINDOW_START
 * on D and closes at WINDOW_END on D, or on D+1 when the window crosses
 * midnight (22:00–06:00 opened on the 27th is night 2026-11-27). A prompt
 * belongs to a night if its run overlaps it: it finished at or after the
 * opening and started (fecha_out − tiempo_ejecucion) before the closing, so
 * the prompt still running at 06:00 counts for the night it started in.
 */
import { localParts, type WindowSpec } from "../window";

export interface Night {
  /** The local date the window opens on, YYYY-MM-DD. */
  date: string;
  opensAt: Date;
  closesAt: Date;
}

const DAY_MS = 86_400_000;

/** Adds days to a YYYY-MM-DD date (calendar arithmetic, no zone involved). */
export function addDays(date: string, days: number): string {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d) + days * DAY_MS).toISOString().slice(0, 10);
}

/** True for a real calendar date written YYYY-MM-DD. */
export function isDate(text: string): boolean {
  return /^\d{4}-\d{2}-\d{2}$/.test(text) && addDays(text, 0) === text;
}

/** The local wall-clock reading of an instant, as milliseconds of a UTC calendar (for arithmetic). */
function wallMs(instant: Date, timeZone: string): number {
  const { date, secondsOfDay } = localParts(instant, timeZone);
  const [y, m, d] = date.split("-").map(Number);
  return Date.UTC(y, m - 1, d) + secondsOfDay * 1000;
}

/**
 * The instant at which the clock in `timeZone` reads `minutes` after midnight
 * of `date` (1440 is the next midnight). A time skipped by a daylight-saving
 * change maps to the instant the clock jumps past it.
 */
export function localInstant(date: string, minutes: number, timeZone: string): Date {
  const [y, m, d] = date.split("-").map(Number);
  const wanted = Date.UTC(y, m - 1, d) + minutes * 60_000;
  // Start from the offset at the wanted wall time read as UTC, and correct
  // twice: the second pass settles the case where the offset changes between.
  let t = wanted - (wallMs(new Date(wanted), timeZone) - wanted);
  for (let i = 0; i < 2; i++) t += wanted - wallMs(new Date(t), timeZone);
  if (wallMs(new Date(t), timeZone) !== wanted) {
    // The wall time does not exist (spring forward): take the first minute
    // whose reading is past it, as isWindowOpen would.
    t = Math.floor(t / 60_000) * 60_000 - 3 * 3_600_000;
    while (wallMs(new Date(t), timeZone) < wanted) t += 60_000;
  }
  return new Date(t);
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

/**
 * Parses what an operator types for a moment: "2026-11-27" (local midnight in
 * `timeZone`), "2026-11-27 14:30" or "2026-11-27T14:30" (local time there), or
 * an ISO instant with its offset ("2026-11-27T14:30:00Z"). Null if malformed.
 */
export function parseMoment(text: string, timeZone: string): Date | null {
  const local = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}):(\d{2}))?$/.exec(text.trim());
  if (local) {
    if (!isDate(local[1])) return null;
    const minutes = local[2] === undefined ? 0 : Number(local[2]) * 60 + Number(local[3]);
    if (local[2] !== undefined && (Number(local[2]) > 23 || Number(local[3]) > 59)) return null;
    return localInstant(local[1], minutes, timeZone);
  }
  if (!/(Z|[+-]\d{2}:?\d{2})$/.test(text.trim())) return null;
  const instant = new Date(text.trim());
  return Number.isNaN(instant.getTime()) ? null : instant;
}

/** "2026-11-27 01:00" in the zone (minutes; the zone is said by the caller). */
export function formatLocal(instant: Date, timeZone: string): string {
  const { date, secondsOfDay } = localParts(instant, timeZone);
  const hh = String(Math.floor(secondsOfDay / 3600)).padStart(2, "0");
  const mm = String(Math.floor((secondsOfDay % 3600) / 60)).padStart(2, "0");
  return `${date} ${hh}:${mm}`;
}

/** An instant as the JSON output gives it: ISO, and local in WINDOW_TZ. */
export interface LocalInstant {
  at: string;
  /** "2026-11-27 01:00" in WINDOW_TZ. */
  local: string;
}

/** The instant as JSON shows it. */
export function toLocalInstant(instant: Date, timeZone: string): LocalInstant {
  return { at: instant.toISOString(), local: formatLocal(instant, timeZone) };
}

/** "42 s", "12 min", "3 h 05 min", "2 d 3 h": a duration for people. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 2 * 86_400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}

/**
 * Parses an operator's duration: "2h", "90m", "1h30m", "45s", "1d". Returns
 * seconds, or null if malformed or zero.
 */
export function parseDuration(text: string): number | null {
  const match = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?:in)?)?(?:(\d+)s)?$/.exec(text.trim().toLowerCase());
  if (!match || text.trim() === "") return null;
  const [d, h, m, s] = match.slice(1).map((v) => Number(v ?? 0));
  const seconds = d * 86_400 + h * 3600 + m * 60 + s;
  return seconds > 0 ? seconds : null;
}
