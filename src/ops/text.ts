/** Text helpers shared by the status screen and the report. */
import type { ErrorGroup } from "../sql/ops";
import { formatDuration } from "./nights";
import type { NightSummary } from "./report";

/** "12.3 s", or "–" when there is nothing to measure. */
export function seconds(value: number | null): string {
  return value === null ? "–" : `${value.toFixed(1)} s`;
}

/** Thousands separated by commas, as operators read counts. */
export function count(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** The lines of the night statistics, shared by status and report. */
export function nightLines(s: NightSummary): string[] {
  if (s.listo + s.errors === 0) return ["nothing ran"];
  return [
    `${count(s.listo)} listo, ${count(s.errors)} error · tokens in ${count(s.tokensIn)} / out ${count(s.tokensOut)}`,
    `tiempo_ejecucion (listo): median ${seconds(s.medianSeconds)} · p95 ${seconds(s.p95Seconds)} · max ${seconds(s.maxSeconds)}`,
    `${s.tokensPerSecond === null ? "–" : s.tokensPerSecond.toFixed(1)} tokens out per second · ` +
      `LLM busy ${formatDuration(s.busySeconds)}, ${(s.busyFraction * 100).toFixed(0)}% of the window`,
  ];
}

/** Error groups as lines: `12 × "message"  ids 3, 7, 9`. */
export function errorLines(groups: ErrorGroup[]): string[] {
  if (groups.length === 0) return ["none"];
  return groups.map((g) => `${count(g.count)} × ${JSON.stringify(g.message)}  ids ${g.exampleIds.join(", ")}${g.count > g.exampleIds.length ? ", …" : ""}`);
}

