/** Text for people, shared by the operators' commands: counts, seconds, durations, error groups. */
import type { ErrorGroup } from "../sql/reports";

/** "12.3 s", or "–" when there is nothing to measure. */
export function seconds(value: number | null): string {
  return value === null ? "–" : `${value.toFixed(1)} s`;
}

/** Thousands separated by commas, as operators read counts. */
export function count(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** Error groups as lines: `12 × "message"  ids 3, 7, 9`. */
export function errorLines(groups: ErrorGroup[]): string[] {
  if (groups.length === 0) return ["none"];
  return groups.map((g) => `${count(g.count)} × ${JSON.stringify(g.message)}  ids ${g.exampleIds.join(", ")}${g.count > g.exampleIds.length ? ", …" : ""}`);
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
