/**
 * Local wall-clock time in one IANA zone, and back: the only place that does
 * this arithmetic. The window (window.ts), the nights of the report
 * (ops/nights.ts) and the operators' dates all go through here, so that each
 * is right across daylight-saving changes in the same way.
 */

const DAY_MS = 86_400_000;

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

/** The local wall-clock reading of an instant in a zone. */
export function localParts(instant: Date, timeZone: string): { date: string; secondsOfDay: number } {
  const parts: Record<string, string> = {};
  for (const p of formatterFor(timeZone).formatToParts(instant)) parts[p.type] = p.value;
  return {
    date: `${parts.year}-${parts.month}-${parts.day}`,
    secondsOfDay: Number(parts.hour) * 3600 + Number(parts.minute) * 60 + Number(parts.second),
  };
}

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
