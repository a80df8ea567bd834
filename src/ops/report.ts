/**
 * `fila-llm report --night YYYY-MM-DD`: the morning report of one night (see
 * nights.ts for what a night is), as text, JSON, or a self-contained HTML page
 * (report_html.ts).
 */
import { formatLocal, toLocalInstant, type LocalInstant } from "../local_time";
import type { Queryable } from "../sql/queryable";
import { errorGroups, queueCounts, runsIn, runStats, slowestRunsIn, type ErrorGroup, type PromptRun, type RunStats } from "../sql/reports";
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
  /** Sum of tiempo_ejecucion (listo and error) over the window's length times its slots. */
  busyFraction: number;
  /** The LLM slots the busy fraction is of: the servers (lanes) × the requests each may have in flight. */
  slots: LlmSlots;
  /** How long the night's last run went on after the window's end (0 if it did not). */
  overrunSeconds: number;
}

/** How many prompts can run at once: LLM_BASE_URL's servers × LLM_CONCURRENCY_PER_SERVER. */
export interface LlmSlots {
  servers: number;
  perServer: number;
}

/** One server answering one prompt at a time, as with the default settings. */
export const ONE_SLOT: LlmSlots = { servers: 1, perServer: 1 };

/** How many prompts these slots run at once. */
export function slotCount(slots: LlmSlots): number {
  return slots.servers * slots.perServer;
}

/** The slots of these settings. */
export function llmSlots(llm: { baseUrls: string[]; concurrencyPerServer: number }): LlmSlots {
  return { servers: llm.baseUrls.length, perServer: llm.concurrencyPerServer };
}

/** The statistics of one night; busy as a fraction of every slot's time in the window. */
export async function summariseNight(db: Queryable, night: Night, window: WindowSpec, slots: LlmSlots = ONE_SLOT): Promise<NightSummary> {
  const stats = await runStats(db, [night]);
  const windowSeconds = (night.closesAt.getTime() - night.opensAt.getTime()) / 1000;
  return {
    night: night.date,
    opensAt: toLocalInstant(night.opensAt, window.timeZone),
    closesAt: toLocalInstant(night.closesAt, window.timeZone),
    windowSeconds,
    ...stats,
    tokensPerSecond: stats.listoSeconds > 0 ? stats.tokensOut / stats.listoSeconds : null,
    busyFraction: windowSeconds > 0 ? stats.busySeconds / (windowSeconds * slotCount(slots)) : 0,
    slots,
    overrunSeconds: stats.lastFinishedAt === null ? 0 : Math.max(0, (stats.lastFinishedAt.getTime() - night.closesAt.getTime()) / 1000),
  };
}

/** " × 4 slots (2 servers × 2)": what a busy fraction is of, when it is more than one slot. */
function slotsNote(slots: LlmSlots): string {
  const n = slotCount(slots);
  if (n === 1) return "";
  return ` × ${n} slots (${slots.servers} server${slots.servers === 1 ? "" : "s"}${slots.perServer > 1 ? ` × ${slots.perServer} at a time` : ""})`;
}

/** The lines of the night statistics, shared by status and report. */
export function nightLines(s: NightSummary): string[] {
  if (s.listo + s.errors === 0) return ["nothing ran"];
  return [
    `${count(s.listo)} listo, ${count(s.errors)} error · tokens in ${count(s.tokensIn)} / out ${count(s.tokensOut)}`,
    `tiempo_ejecucion (listo): median ${seconds(s.medianSeconds)} · p95 ${seconds(s.p95Seconds)} · max ${seconds(s.maxSeconds)}`,
    `generation speed ${s.generationTokensPerSecond === null ? "–" : s.generationTokensPerSecond.toFixed(1)} tokens/s (the server's counts over its generation time) · ` +
      `${s.tokensPerSecond === null ? "–" : s.tokensPerSecond.toFixed(1)} tiktoken tokens out per second of LLM time`,
    `LLM busy ${formatDuration(s.busySeconds)}, ${(s.busyFraction * 100).toFixed(0)}% of the window${slotsNote(s.slots)} · model load inside the runs ${seconds(s.loadSeconds)} · ` +
      `${s.overrunSeconds > 0 ? `ran ${formatDuration(s.overrunSeconds)} past the window's end` : "ended within the window"}`,
    `${count(s.cutShort)} answers cut short by a token limit (listo, finish_reason length; ${formatDuration(s.cutShortSeconds)}) · ` +
      `${count(s.generationsCut)} generations cut (loop, stall, timeout or size; ${formatDuration(s.generationsCutSeconds)} of LLM time) · ` +
      `${count(s.truncatedInputs)} prompts longer than the server's context (truncated_input)`,
  ];
}


/** The report of one night without the list of its runs: what the text report shows. */
export interface NightSummaryReport {
  window: string;
  timeZone: string;
  summary: NightSummary;
  /** The night's rows now in 'error', grouped by message. */
  errors: ErrorGroup[];
  /** The night's longest runs, longest first. */
  slowest: PromptRun[];
  /** Rows 'pendiente' when the report was made. */
  pendingNow: number;
}

export interface NightReport extends NightSummaryReport {
  /** Every run of the night, in the order they finished (for JSON and the HTML page: one row per prompt). */
  runs: PromptRun[];
}

/** The slowest runs, for the text report. */
const SLOWEST = 5;

/**
 * Reads the report of one night, without the list of every run: the text
 * report's, which stays fast on a night of a hundred thousand prompts.
 */
export async function readNightSummaryReport(db: Queryable, night: Night, window: WindowSpec, slots: LlmSlots = ONE_SLOT): Promise<NightSummaryReport> {
  return {
    window: describeWindow(window),
    timeZone: window.timeZone,
    summary: await summariseNight(db, night, window, slots),
    errors: await errorGroups(db, [night], 20),
    slowest: await slowestRunsIn(db, night, SLOWEST),
    pendingNow: (await queueCounts(db)).pendiente,
  };
}

/** Reads the report of one night, with every run. */
export async function readNightReport(db: Queryable, night: Night, window: WindowSpec, slots: LlmSlots = ONE_SLOT): Promise<NightReport> {
  const report = await readNightSummaryReport(db, night, window, slots);
  return { ...report, runs: await runsIn(db, night) };
}

/** The report as text. */
export function renderReport(r: NightSummaryReport): string {
  const s = r.summary;
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
    ...(r.slowest.length === 0
      ? ["  none"]
      : r.slowest.map((p) => `  ${p.id}  ${p.estatus.padEnd(5)}  ${p.seconds.toFixed(2)} s  finished ${formatLocal(p.finishedAt, r.timeZone)}`)),
  ].join("\n");
}
