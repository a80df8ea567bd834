/**
 * `fila-llm status`: one screen that answers the morning's questions: is the
 * window open, what is queued and running, how did last night go, will the
 * pending rows fit tonight, and what failed and why.
 */
import { toLocalInstant, type LocalInstant } from "../local_time";
import { queueState } from "../queue_state";
import { readControl } from "../sql/control";
import { runningPrompts, type RunningPrompt } from "../sql/jobs";
import type { Queryable } from "../sql/queryable";
import { ERROR_SAMPLE_ROWS, errorGroups, queueCounts, recentListoTimes, runsByServer, type ErrorGroup, type QueueCounts } from "../sql/reports";
import { readServerStates, type ServerStatus } from "../sql/servers";
import { describeWindow, nextWindowChange, type WindowSpec } from "../window";
import { currentOrNextNight, lastClosedNight, recentNights, type Night } from "./nights";
import { nightLines, ONE_SLOT, slotCount, summariseNight, type LlmSlots, type NightSummary } from "./report";
import { count, errorLines, formatDuration, seconds } from "./text";

// A week smooths out one odd night without hiding a change of model.
const ESTIMATE_NIGHTS = 7;
// The median of this many runs is as good as that of all of them for an
// estimate (its standard error is 1.25 σ/√5000, under 2% of the runs'
// spread), and reading them takes milliseconds however busy the week was
// (at 20 prompts/s, seven 5-hour nights are 2.5 million runs).
export const ESTIMATE_SAMPLE_RUNS = 5_000;

export interface Status {
  now: LocalInstant;
  window: {
    /** "01:00–06:00 America/Mexico_City". */
    spec: string;
    timeZone: string;
    /** The schedule alone: is it inside the window now? */
    inWindow: boolean;
    /** What the worker obeys: inside the window or forced open, and not paused. */
    queueOpen: boolean;
    paused: boolean;
    forcedOpenUntil: LocalInstant | null;
    nextOpening: LocalInstant | null;
    nextClosing: LocalInstant | null;
  };
  queue: QueueCounts & { running: RunningPrompt[] };
  lastNight: NightSummary;
  tonight: {
    night: string;
    pending: number;
    /** Time left in the window tonight: all of it, or what remains if it is open now. */
    availableSeconds: number;
    /** The time per prompt the estimate uses: the server's own (reading + generating) where it reports it, else tiempo_ejecucion; median of the most recent 'listo' runs of the recent nights (runsUsed). */
    medianSeconds: number | null;
    /** Where medianSeconds comes from. */
    basis: "server" | "tiempo_ejecucion";
    nightsUsed: number;
    /** The 'listo' runs the median comes from: the most recent ESTIMATE_SAMPLE_RUNS of those nights at most. */
    runsUsed: number;
    /** True when there were more: the median is that of the most recent ones. */
    runsSampled: boolean;
    neededSeconds: number | null;
    fits: boolean | null;
  };
  /** Rows now in 'error', grouped by message: the most recent ERROR_SAMPLE_ROWS of them at most. */
  errors: ErrorGroup[];
  /** How many error rows `errors` groups, when that is fewer than all of them; else null. */
  errorsSampledOf: { rows: number; total: number } | null;
  /** Each LLM server (a lane): what the worker last saw of it (fila_llm_servers), what it runs now, and its last night. */
  llm: LaneStatus[];
}

export interface LaneStatus extends Omit<ServerStatus, "since" | "lastLoadAt" | "holderSince"> {
  since: LocalInstant;
  lastLoadAt: LocalInstant | null;
  /** The prompts in flight on it now (its lane holder's locked jobs). */
  running: RunningPrompt[];
  /** Last night's runs on it; null when it ran none. */
  lastNight: { prompts: number; busySeconds: number; busyFraction: number; tokensPerSecond: number | null } | null;
}

/** Reads everything the status screen shows, as of `now`, for an LLM of these slots. */
export async function readStatus(db: Queryable, window: WindowSpec, now = new Date(), slots: LlmSlots = ONE_SLOT): Promise<Status> {
  const state = queueState(now, window, await readControl(db));
  const next = nextWindowChange(now, window);
  const after = next ? nextWindowChange(next.at, window) : null;
  const opening = next?.opens ? next.at : after?.at ?? null;
  const closing = next && !next.opens ? next.at : after?.at ?? null;

  const counts = await queueCounts(db);
  const running = await runningPrompts(db);
  const lastClosed = lastClosedNight(now, window);
  const lastNight = await summariseNight(db, lastClosed, window, slots);
  const lastNightByServer = new Map((await runsByServer(db, lastClosed)).map((lane) => [lane.server, lane]));

  const recent = recentNights(now, window, ESTIMATE_NIGHTS);
  const recentStats = await recentListoTimes(db, recent, ESTIMATE_SAMPLE_RUNS);
  const tonight: Night = currentOrNextNight(now, window);
  const availableSeconds = (tonight.closesAt.getTime() - Math.max(now.getTime(), tonight.opensAt.getTime())) / 1000;
  // The server's own time per prompt leaves out what is not the GPU's (the queue, the network).
  const perPromptSeconds = recentStats.medianServerSeconds ?? recentStats.medianSeconds;
  // Every slot takes its share of the queue.
  const neededSeconds = perPromptSeconds === null ? null : (counts.pendiente * perPromptSeconds) / slotCount(slots);

  return {
    now: toLocalInstant(now, window.timeZone),
    window: {
      spec: describeWindow(window),
      timeZone: window.timeZone,
      inWindow: state.inWindow,
      queueOpen: state.open,
      paused: state.paused,
      forcedOpenUntil: state.forcedOpenUntil ? toLocalInstant(state.forcedOpenUntil, window.timeZone) : null,
      nextOpening: opening ? toLocalInstant(opening, window.timeZone) : null,
      nextClosing: closing ? toLocalInstant(closing, window.timeZone) : null,
    },
    queue: { ...counts, running },
    lastNight,
    tonight: {
      night: tonight.date,
      pending: counts.pendiente,
      availableSeconds,
      medianSeconds: perPromptSeconds,
      basis: recentStats.medianServerSeconds !== null ? "server" : "tiempo_ejecucion",
      nightsUsed: recent.length,
      runsUsed: recentStats.runs,
      runsSampled: recentStats.runs >= ESTIMATE_SAMPLE_RUNS,
      neededSeconds,
      fits: neededSeconds === null ? null : neededSeconds <= availableSeconds,
    },
    errors: await errorGroups(db, null),
    errorsSampledOf: counts.error > ERROR_SAMPLE_ROWS ? { rows: ERROR_SAMPLE_ROWS, total: counts.error } : null,
    llm: (await readServerStates(db)).map(({ holderSince: _, ...server }) => {
      const night = lastNightByServer.get(server.server);
      return {
        ...server,
        since: toLocalInstant(server.since, window.timeZone),
        lastLoadAt: server.lastLoadAt ? toLocalInstant(server.lastLoadAt, window.timeZone) : null,
        running: running.filter((r) => server.holderPool !== null && r.lockedBy === server.holderPool),
        lastNight: night
          ? {
              prompts: night.prompts,
              busySeconds: night.busySeconds,
              busyFraction: lastNight.windowSeconds > 0 ? night.busySeconds / (lastNight.windowSeconds * slots.perServer) : 0,
              tokensPerSecond: night.tokensPerSecond,
            }
          : null,
      };
    }),
  };
}

// Each state says first whether the lane is up, down or probing.
const STATE_WORDS: Record<ServerStatus["state"], string> = {
  answering: "up, answering",
  loading: "up, loading the model",
  released: "up, model released",
  outage: "DOWN (an outage: prompts wait, none is marked error)",
  misconfigured: "DOWN, MISCONFIGURED (prompts wait until it is fixed)",
  probing: "PROBING (its outage back-off is over; its health probe runs before it gets a prompt)",
};

/**
 * Two lines per LLM server (a lane): its state since when, why, and its last
 * model load; then what it runs now and its last night.
 */
function llmLines(s: Status): string[] {
  if (s.llm.length === 0) return ["no worker has reported on the LLM yet"];
  return s.llm.flatMap((server) => {
    const load = server.lastLoadSeconds !== null && server.lastLoadAt ? ` · last model load ${server.lastLoadSeconds.toFixed(1)} s at ${server.lastLoadAt.local}` : "";
    const running = server.running.length === 0 ? "nothing" : server.running.map((r) => `prompt ${r.promptId} for ${formatDuration(r.seconds)}`).join(", ");
    const n = server.lastNight;
    const night = n === null
      ? "no prompt"
      : `${count(n.prompts)} prompts, busy ${(n.busyFraction * 100).toFixed(0)}%, ${n.tokensPerSecond === null ? "–" : n.tokensPerSecond.toFixed(1)} tokens/s`;
    return [
      `${server.server}: ${STATE_WORDS[server.state]} since ${server.since.local}${server.message ? `: ${server.message}` : ""}${load}`,
      `  running now: ${running} · last night: ${night}`,
    ];
  });
}

function block(label: string, lines: string[]): string {
  return lines.map((line, i) => `${(i === 0 ? label : "").padEnd(12)}${line}`).join("\n");
}

/** The status screen as text, for a terminal. */
export function renderStatus(s: Status): string {
  const w = s.window;
  const state = w.paused
    ? "PAUSED (nothing starts until `fila-llm resume`)"
    : w.forcedOpenUntil
      ? `FORCED OPEN until ${w.forcedOpenUntil.local}`
      : w.inWindow
        ? "open"
        : "closed";
  const when = (label: string, t: LocalInstant | null) =>
    t ? `${label} ${t.local} (in ${formatDuration((Date.parse(t.at) - Date.parse(s.now.at)) / 1000)})` : `${label} never`;
  const q = s.queue;
  const t = s.tonight;
  const tonightLine =
    t.pending === 0
      ? "nothing pending"
      : t.fits === null
        ? `${count(t.pending)} pendiente; no 'listo' run in the last ${t.nightsUsed} nights to estimate from`
        : `${count(t.pending)} pendiente × median ${seconds(t.medianSeconds)}${t.basis === "server" ? " of the server's own time" : ""} ` +
          `(${t.runsSampled ? `the last ${count(t.runsUsed)} 'listo' runs of the last ${t.nightsUsed} nights` : `last ${t.nightsUsed} nights`}) ≈ ` +
          `${formatDuration(t.neededSeconds!)} of ${formatDuration(t.availableSeconds)} left in the window: ` +
          (t.fits ? "fits" : `does NOT fit (about ${Math.ceil(t.neededSeconds! / t.availableSeconds)} nights)`);
  return [
    `fila-llm status at ${s.now.local} ${w.timeZone}`,
    "",
    block("Window", [
      `${w.spec}: ${state}${w.paused || w.forcedOpenUntil ? ` (schedule: ${w.inWindow ? "open" : "closed"})` : ""}`,
      `${when("opens", w.nextOpening)} · ${when("closes", w.nextClosing)}`,
    ]),
    block("LLM", llmLines(s)),
    block("Queue", [
      `pendiente ${count(q.pendiente)} · listo ${count(q.listo)} · error ${count(q.error)}`,
      `oldest pendiente waiting ${q.oldestPendingSeconds === null ? "–" : formatDuration(q.oldestPendingSeconds)}`,
      q.running.length === 0
        ? "running now: nothing"
        : `running now: ${q.running.map((r) => `prompt ${r.promptId} for ${formatDuration(r.seconds)}`).join(", ")}`,
    ]),
    block("Last night", [`${s.lastNight.night} (${s.lastNight.opensAt.local} – ${s.lastNight.closesAt.local})`, ...nightLines(s.lastNight)]),
    block("Tonight", [`${t.night}: ${tonightLine}`]),
    block("Errors", [
      ...(s.errorsSampledOf
        ? [`the ${count(s.errorsSampledOf.rows)} that failed last of ${count(s.errorsSampledOf.total)} rows in error, by message:`]
        : []),
      ...errorLines(s.errors),
    ]),
  ].join("\n");
}
