/**
 * The morning report as one self-contained HTML page: a timeline of the night
 * (one row per LLM server, one bar per prompt, coloured by outcome) and a histogram of
 * tiempo_ejecucion, drawn as plain SVG here on the server. No script, no
 * font, no image, no stylesheet to fetch: it opens the same offline.
 */
import { formatLocal, localParts } from "../local_time";
import type { PromptRun } from "../sql/reports";
import type { NightReport } from "./report";
import { count, formatDuration, seconds } from "./text";

const COLOURS = { listo: "#2e7d32", error: "#c62828" } as const;
const WIDTH = 1100;
const MARGIN = { left: 64, right: 24, top: 28, bottom: 36 };
// Above this many bars, per-bar tooltips would make the file heavy for no use.
const MAX_TOOLTIPS = 2000;
// Candidate tick steps for the time axis; the first that gives ≤ 12 ticks wins.
const TICK_STEPS_SECONDS = [300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const HISTOGRAM_BINS = 20;

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

const n1 = (x: number) => (Math.round(x * 10) / 10).toString();

/** "01:00": the local time of day, for axis labels and tooltips. */
function hhmm(instant: Date, timeZone: string): string {
  return formatLocal(instant, timeZone).slice(11);
}

/** Ticks at round local times (every 5 min … 1 day) between two instants. */
function timeTicks(fromMs: number, toMs: number, timeZone: string): Date[] {
  const span = (toMs - fromMs) / 1000;
  const step = TICK_STEPS_SECONDS.find((s) => span / s <= 12) ?? 86400;
  const offset = localParts(new Date(fromMs), timeZone).secondsOfDay % step;
  const ticks: Date[] = [];
  for (let t = fromMs + ((step - offset) % step) * 1000; t <= toMs; t += step * 1000) ticks.push(new Date(t));
  return ticks;
}

// Height in pixels of one track of a lane's row (one request in flight at a time).
const TRACK_HEIGHT_PX = 28;

/**
 * A lane's runs on as few tracks as they need: a run goes on the first track
 * free at its start, so a server that answers one prompt at a time has one
 * track, one with LLM_CONCURRENCY_PER_SERVER = 4 at most four.
 */
function tracksOf(runs: PromptRun[]): PromptRun[][] {
  const tracks: PromptRun[][] = [];
  for (const run of runs) {
    const free = tracks.find((t) => t[t.length - 1].finishedAt.getTime() <= run.startedAt.getTime());
    if (free) free.push(run);
    else tracks.push([run]);
  }
  return tracks;
}

/** The timeline: x is local time over the night, one row per lane (LLM server), one bar per prompt. */
export function timelineSvg(runs: PromptRun[], opensAt: Date, closesAt: Date, timeZone: string): string {
  const sorted = [...runs].sort((a, b) => a.startedAt.getTime() - b.startedAt.getTime() || a.id - b.id);
  // reduce, not Math.min(...): a night can have more runs than a call has arguments.
  const from = sorted.reduce((m, r) => Math.min(m, r.startedAt.getTime()), opensAt.getTime());
  const to = sorted.reduce((m, r) => Math.max(m, r.finishedAt.getTime()), closesAt.getTime());
  const servers = [...new Set(sorted.map((r) => r.server))].sort((a, b) => (a ?? "").localeCompare(b ?? ""));
  const lanes = (servers.length > 0 ? servers : [null]).map((server) => ({
    server,
    tracks: tracksOf(sorted.filter((r) => r.server === server)),
  }));
  const trackCount = lanes.reduce((n, lane) => n + Math.max(1, lane.tracks.length), 0);
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = Math.min(420, Math.max(60, trackCount * TRACK_HEIGHT_PX));
  const trackH = plotH / trackCount;
  const height = MARGIN.top + plotH + MARGIN.bottom;
  const x = (ms: number) => MARGIN.left + ((ms - from) / (to - from)) * plotW;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="timeline of the night">`);
  out.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="#fafafa" stroke="#ccc"/>`);
  out.push(`<rect class="window" x="${n1(x(opensAt.getTime()))}" y="${MARGIN.top}" width="${n1(x(closesAt.getTime()) - x(opensAt.getTime()))}" height="${plotH}" fill="#e8eef9"/>`);
  for (const tick of timeTicks(from, to, timeZone)) {
    const tx = n1(x(tick.getTime()));
    out.push(`<line x1="${tx}" x2="${tx}" y1="${MARGIN.top}" y2="${MARGIN.top + plotH}" stroke="#d0d7e2"/>`);
    out.push(`<text x="${tx}" y="${MARGIN.top + plotH + 16}" text-anchor="middle">${hhmm(tick, timeZone)}</text>`);
  }
  let y = MARGIN.top;
  lanes.forEach((lane, i) => {
    const laneH = Math.max(1, lane.tracks.length) * trackH;
    if (i > 0) out.push(`<line class="lane-edge" x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${n1(y)}" y2="${n1(y)}" stroke="#999"/>`);
    lane.tracks.forEach((track, t) => {
      const top = y + t * trackH;
      const barH = Math.max(trackH > 3 ? trackH - 2 : trackH, 0.6);
      for (const r of track) {
        const bx = x(r.startedAt.getTime());
        const bw = Math.max(x(r.finishedAt.getTime()) - bx, 1);
        const title =
          sorted.length <= MAX_TOOLTIPS
            ? `<title>prompt ${r.id}: ${r.estatus}, ${r.seconds.toFixed(2)} s, ${hhmm(r.startedAt, timeZone)}–${hhmm(r.finishedAt, timeZone)}${r.server ? ` on ${escape(r.server)}` : ""}${r.errorMessage ? ` — ${escape(r.errorMessage)}` : ""}</title>`
            : "";
        out.push(
          `<rect class="run ${r.estatus}" data-id="${r.id}" x="${n1(bx)}" y="${n1(top + 1)}" width="${n1(bw)}" height="${n1(barH)}" fill="${COLOURS[r.estatus]}">${title}</rect>`,
        );
      }
    });
    out.push(`<text class="lane" x="${MARGIN.left + 4}" y="${n1(y + Math.min(laneH, 14) - 3)}" font-size="11">${escape(lane.server ?? "LLM")}</text>`);
    y += laneH;
  });
  out.push(`<text x="${MARGIN.left}" y="${MARGIN.top - 10}">${escape(`${hhmm(opensAt, timeZone)}–${hhmm(closesAt, timeZone)} ${timeZone}; shaded: the window; one row per LLM server`)}</text>`);
  out.push(`</svg>`);
  return out.join("\n");
}

/** 1, 2 or 5 times a power of ten, at least `x`: a bin width people can read. */
function niceStep(x: number): number {
  const p = 10 ** Math.floor(Math.log10(x));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= x)!;
}

/** Histogram of tiempo_ejecucion, 'listo' and 'error' stacked. */
export function histogramSvg(runs: PromptRun[]): string {
  const width = 720;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = 200;
  const height = MARGIN.top + plotH + MARGIN.bottom;
  const max = runs.reduce((m, r) => Math.max(m, r.seconds), 0);
  const binWidth = max > 0 ? niceStep(max / HISTOGRAM_BINS) : 1;
  const bins = Math.max(1, Math.floor(max / binWidth) + 1);
  const counts = Array.from({ length: bins }, () => ({ listo: 0, error: 0 }));
  for (const r of runs) counts[Math.min(bins - 1, Math.floor(r.seconds / binWidth))][r.estatus]++;
  const top = counts.reduce((m, c) => Math.max(m, c.listo + c.error), 1);
  const barW = plotW / bins;
  const y = (n: number) => MARGIN.top + plotH - (n / top) * plotH;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" id="histogram" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="histogram of tiempo_ejecucion">`);
  out.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="#fafafa" stroke="#ccc"/>`);
  counts.forEach((c, i) => {
    const bx = n1(MARGIN.left + i * barW + 1);
    const bw = n1(Math.max(barW - 2, 1));
    const range = `${n1(i * binWidth)}–${n1((i + 1) * binWidth)} s`;
    if (c.listo > 0) {
      out.push(`<rect class="bin listo" x="${bx}" y="${n1(y(c.listo))}" width="${bw}" height="${n1(y(0) - y(c.listo))}" fill="${COLOURS.listo}"><title>${range}: ${c.listo} listo</title></rect>`);
    }
    if (c.error > 0) {
      out.push(`<rect class="bin error" x="${bx}" y="${n1(y(c.listo + c.error))}" width="${bw}" height="${n1(y(c.listo) - y(c.listo + c.error))}" fill="${COLOURS.error}"><title>${range}: ${c.error} error</title></rect>`);
    }
  });
  const labelEvery = Math.ceil(bins / 10);
  for (let i = 0; i <= bins; i += labelEvery) {
    out.push(`<text x="${n1(MARGIN.left + i * barW)}" y="${MARGIN.top + plotH + 16}" text-anchor="middle">${n1(i * binWidth)}</text>`);
  }
  out.push(`<text x="${MARGIN.left + plotW}" y="${MARGIN.top + plotH + 32}" text-anchor="end">seconds</text>`);
  out.push(`<text x="${MARGIN.left - 8}" y="${MARGIN.top + 10}" text-anchor="end">${top}</text>`);
  out.push(`<text x="${MARGIN.left - 8}" y="${MARGIN.top + plotH}" text-anchor="end">0</text>`);
  out.push(`<text x="${MARGIN.left}" y="${MARGIN.top - 10}">prompts per ${n1(binWidth)} s of tiempo_ejecucion</text>`);
  out.push(`</svg>`);
  return out.join("\n");
}

/** The whole page. */
export function renderReportHtml(r: NightReport): string {
  const s = r.summary;
  const title = `fila-llm: night ${s.night}`;
  const facts: [string, string][] = [
    ["window", `${s.opensAt.local} – ${s.closesAt.local} ${r.timeZone}`],
    ["listo", count(s.listo)],
    ["error", count(s.errors)],
    ["tokens in / out", `${count(s.tokensIn)} / ${count(s.tokensOut)}`],
    ["tiempo_ejecucion (listo)", `median ${seconds(s.medianSeconds)}, p95 ${seconds(s.p95Seconds)}, max ${seconds(s.maxSeconds)}`],
    ["generation speed (server's tokens / its generation time)", s.generationTokensPerSecond === null ? "–" : `${s.generationTokensPerSecond.toFixed(1)} tokens/s`],
    ["tiktoken tokens out per second of LLM time", s.tokensPerSecond === null ? "–" : s.tokensPerSecond.toFixed(1)],
    ["model load inside the runs", seconds(s.loadSeconds)],
    ["past the window's end", s.overrunSeconds > 0 ? formatDuration(s.overrunSeconds) : "–"],
    ["prompts longer than the context (truncated_input)", count(s.truncatedInputs)],
    ["LLM busy", `${formatDuration(s.busySeconds)}, ${(s.busyFraction * 100).toFixed(0)}% of the window`],
    ["answers cut short (finish_reason length)", `${count(s.cutShort)}, ${formatDuration(s.cutShortSeconds)}`],
    ["generations cut (loop, stall, timeout, size)", `${count(s.generationsCut)}, ${formatDuration(s.generationsCutSeconds)} of LLM time`],
    ["pendiente now", count(r.pendingNow)],
  ];
  const errors =
    r.errors.length === 0
      ? "<p>No errors.</p>"
      : `<table><tr><th>count</th><th>message</th><th>example ids</th></tr>${r.errors
          .map((e) => `<tr><td>${e.count}</td><td>${escape(e.message)}</td><td>${e.exampleIds.join(", ")}</td></tr>`)
          .join("")}</table>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escape(title)}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 12px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
table { border-collapse: collapse; }
td, th { padding: 2px 12px 2px 0; text-align: left; vertical-align: top; }
th { font-weight: 600; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; }
</style>
</head>
<body>
<h1>${escape(title)} (${escape(r.window)})</h1>
<table>${facts.map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(v)}</td></tr>`).join("")}</table>
<h2>Timeline</h2>
<p class="legend">One bar per prompt, in the order they ran:<span style="background:${COLOURS.listo}"></span>listo (${s.listo})<span style="background:${COLOURS.error}"></span>error (${s.errors})<span style="background:#e8eef9;border:1px solid #ccc"></span>the window</p>
${timelineSvg(r.runs, new Date(s.opensAt.at), new Date(s.closesAt.at), r.timeZone)}
<h2>tiempo_ejecucion</h2>
${histogramSvg(r.runs)}
<h2>Errors of the night</h2>
${errors}
</body>
</html>
`;
}
