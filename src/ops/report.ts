/**
 * `fila-llm report --night YYYY-MM-DD`: the morning report of one night (see
 * nights.ts for what a night is), as text, JSON, or a self-contained HTML page
 * (report_html.ts).
 */
import { formatLocal, toLocalInstant, type LocalInstant } from "../local_time";
import type { Queryable } from "../sql/queryable";
import { errorGroups, queueCounts, runsIn, runStats, type ErrorGroup, type PromptRun, type RunStats } from "../sql/reports";
import { describeWindow, type WindowSpec } from "../window";
import type { Night } from "./nights";
import { count, errorLines, formatDuration, seconds } from "./text";

export interface NightSummary extends RunStats {
  night: string;
  opensAt: LocalInstant;
  closesAt: LocalInstant;
  windowSeconds: number;
  /** tokens_out per second of 'listo' LLM time. */
  tokensPerSecond: number | null;
  /** Sum of tiempo_ejecucion (listo and error) over the window's length. */
  busyFraction: number;
  /** How long the night's last run went on after the window's end (0 if it did not). */
  overrunSeconds: number;
}

/** The statistics of one night. */
export async function summariseNight(db: Queryable, night: Night, window: WindowSpec): Promise<NightSummary> {
  const stats = await runStats(db, [night]);
  const windowSeconds = (night.closesAt.getTime() - night.opensAt.getTime()) / 1000;
  return {
    night: night.date,
    opensAt: toLocalInstant(night.opensAt, window.timeZone),
    closesAt: toLocalInstant(night.closesAt, window.timeZone),
    windowSeconds,
    ...stats,
    tokensPerSecond: stats.listoSeconds > 0 ? stats.tokensOut / stats.listoSeconds : null,
    busyFraction: windowSeconds > 0 ? stats.busySeconds / windowSeconds : 0,
    overrunSeconds: stats.lastFinishedAt === null ? 0 : Math.max(0, (stats.lastFinishedAt.getTime() - night.closesAt.getTime()) / 1000),
  };
}

/** The lines of the night statistics, shared by status and report. */
export function nightLines(s: NightSummary): string[] {
  if (s.listo + s.errors === 0) return ["nothing ran"];
  return [
    `${count(s.listo)} listo, ${count(s.errors)} error · tokens in ${count(s.tokensIn)} / out ${count(s.tokensOut)}`,
    `tiempo_ejecucion (listo): median ${seconds(s.medianSeconds)} · p95 ${seconds(s.p95Seconds)} · max ${seconds(s.maxSeconds)}`,
    `generation speed ${s.generationTokensPerSecond === null ? "–" : s.generationTokensPerSecond.toFixed(1)} tokens/s (the server's counts over its generation time) · ` +
      `${s.tokensPerSecond === null ? "–" : s.tokensPerSecond.toFixed(1)} tiktoken tokens out per second of LLM time`,
    `LLM busy ${formatDuration(s.busySeconds)}, ${(s.busyFraction * 100).toFixed(0)}% of the window · model load inside the runs ${seconds(s.loadSeconds)} · ` +
      `${s.overrunSeconds > 0 ? `ran ${formatDuration(s.overrunSeconds)} past the window's end` : "ended within the window"}`,
    `${count(s.cutShort)} answers cut short by a token limit (listo, finish_reason length; ${formatDuration(s.cutShortSeconds)}) · ` +
      `${count(s.generationsCut)} generations cut (loop, stall, timeout or size; ${formatDuration(s.generationsCutSeconds)} of LLM time) · ` +
      `${count(s.truncatedInputs)} prompts longer than the server's context (truncated_input)`,
  ];
}


export interface NightReport {
  window: string;
  timeZone: string;
  summary: NightSummary;
  /** The night's rows now in 'error', grouped by message. */
  errors: ErrorGroup[];
  /** Every run of the night, in the order they finished. */
  runs: PromptRun[];
  /** Rows 'pendiente' when the report was made. */
  pendingNow: number;
}

/** Reads the report of one night. */
export async function readNightReport(db: Queryable, night: Night, window: WindowSpec): Promise<NightReport> {
  return {
    window: describeWindow(window),
    timeZone: window.timeZone,
    summary: await summariseNight(db, night, window),
    errors: await errorGroups(db, [night], 20),
    runs: await runsIn(db, night),
    pendingNow: (await queueCounts(db)).pendiente,
  };
}

/** The slowest runs, for the text report. */
const SLOWEST = 5;

/** The report as text. */
export function renderReport(r: NightReport): string {
  const s = r.summary;
  const slowest = [...r.runs].sort((a, b) => b.seconds - a.seconds || a.id - b.id).slice(0, SLOWEST);
  return [
    `fila-llm report: night ${s.night}, ${s.opensAt.local} – ${s.closesAt.local} ${r.timeZone} (window ${r.window})`,
    "",
    ...nightLines(s),
    `${count(r.pendingNow)} pendiente now`,
    "",
    "Errors of the night, by message:",
    ...errorLines(r.errors).map((l) => "  " + l),
    "",
    "Slowest prompts:",
    ...(slowest.length === 0
      ? ["  none"]
      : slowest.map((p) => `  ${p.id}  ${p.estatus.padEnd(5)}  ${p.seconds.toFixed(2)} s  finished ${formatLocal(p.finishedAt, r.timeZone)}`)),
  ].join("\n");
}
