/**
 * The whole rule of the nightly window, in local wall-clock time of one zone.
 * graphile-worker's crontab only knows UTC, so nothing else may decide this.
 */
import { localParts } from "./local_time";

export interface WindowSpec {
  /** Minutes after local midnight, 0..1439. */
  startMinutes: number;
  /** Minutes after local midnight, 1..1440; 1440 is "24:00". Less than start means it crosses midnight. */
  endMinutes: number;
  /** IANA zone, e.g. America/Mexico_City. */
  timeZone: string;
}

const MINUTES_PER_DAY = 24 * 60;

/** Parses "HH:MM" (00:00 to 24:00) into minutes after midnight, or null if malformed. */
export function parseClockTime(text: string): number | null {
  const match = /^(\d{2}):(\d{2})$/.exec(text);
  if (!match) return null;
  const hours = Number(match[1]);
  const minutes = Number(match[2]);
  if (minutes > 59 || hours > 24 || (hours === 24 && minutes !== 0)) return null;
  return hours * 60 + minutes;
}

/** Formats minutes after midnight as "HH:MM". */
export function formatClockTime(minutes: number): string {
  return `${String(Math.floor(minutes / 60)).padStart(2, "0")}:${String(minutes % 60).padStart(2, "0")}`;
}

/** Is the window open at this instant? Start is inclusive, end exclusive. */
export function isWindowOpen(instant: Date, window: WindowSpec): boolean {
  const seconds = localParts(instant, window.timeZone).secondsOfDay;
  const start = window.startMinutes * 60;
  const end = window.endMinutes * 60;
  return start < end ? seconds >= start && seconds < end : seconds >= start || seconds < end;
}

/**
 * The next instant (to the minute) after `from` at which the window opens or
 * closes. Scans minute by minute, which is plainly right across daylight-saving
 * changes and cheap enough for the gate and the status screen (≤ 2 days).
 */
export function nextWindowChange(from: Date, window: WindowSpec): { at: Date; opens: boolean } | null {
  if (window.startMinutes === 0 && window.endMinutes === MINUTES_PER_DAY) return null;
  const wasOpen = isWindowOpen(from, window);
  const firstMinute = Math.floor(from.getTime() / 60_000) * 60_000 + 60_000;
  for (let t = firstMinute; t <= firstMinute + 2 * MINUTES_PER_DAY * 60_000; t += 60_000) {
    const at = new Date(t);
    if (isWindowOpen(at, window) !== wasOpen) return { at, opens: !wasOpen };
  }
  return null;
}

/** "01:00–06:00 America/Mexico_City", for logs and the status screen. */
export function describeWindow(window: WindowSpec): string {
  return `${formatClockTime(window.startMinutes)}–${formatClockTime(window.endMinutes)} ${window.timeZone}`;
}
