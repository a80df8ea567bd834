/**
 * What the status screen, the morning report and window_gate's progress and
 * summary lines read: counts, times and errors of the runs of a night.
 *
 * Local time: fecha_in and fecha_out are TIMESTAMP WITHOUT TIME ZONE, written
 * by now() in the writer's session TimeZone. Every query here reads them as
 * instants in this session's TimeZone, with a cast to timestamptz (the same
 * reading as `AT TIME ZONE current_setting('TimeZone')`, without looking the
 * zone up again for every row), so it assumes this session has the writers'
 * TimeZone; the worker and the CLI both use the database's default (set one
 * with ALTER DATABASE … SET timezone). Windows and nights come in as instants
 * (timestamptz), computed in WINDOW_TZ by src/ops/nights.ts and
 * src/local_time.ts.
 *
 * Scale (docs/architecture.md, "Status at scale"): counts come from
 * fila_llm_counts, the queue's head from fila_llm_anahuac_pendiente_idx, a
 * span's runs from fila_llm_anahuac_fecha_out_idx, and what is read over
 * many nights or all time is a bounded sample of the most recent rows.
 */
import { countByEstatus } from "./prompts";
import type { Queryable } from "./queryable";

/** A span of time [opensAt, closesAt): a night, or the queue's current open period. */
export interface Span {
  opensAt: Date;
  closesAt: Date;
}

// The largest tiempo_ejecucion any finished row was written with, in seconds:
// an upper bound kept by the triggers (fila_llm_counts, migrations/0015).
const MAX_RUN_SECONDS = "(SELECT greatest(coalesce(max(max_run_seconds), 0), 0)::float8 FROM fila_llm_counts)";

// fecha_out is a wall-clock TIMESTAMP. An index on it serves only bounds on
// the raw column, so a span's instants are converted to wall-clock time once
// per query. Reading wall-clock time as an instant is monotonic, but where
// daylight saving changes an hour repeats (PostgreSQL reads it as standard
// time, the later instant) or is skipped, so an instant's own wall-clock time
// can miss rows of that hour: each bound also takes the zone's offset a day
// before and a day after. This gives a superset; IN_SPANS is the exact test.
function wallClockAtOrBefore(instant: string): string {
  return `least((${instant})::timestamp,
                ((${instant}) - interval '24 hours')::timestamp + interval '24 hours',
                ((${instant}) + interval '24 hours')::timestamp - interval '24 hours')`;
}
function wallClockAtOrAfter(instant: string): string {
  return `greatest((${instant})::timestamp,
                   ((${instant}) - interval '24 hours')::timestamp + interval '24 hours',
                   ((${instant}) + interval '24 hours')::timestamp - interval '24 hours')`;
}

// Finished rows whose fecha_out lies where a run of the spans can have
// finished: from the earliest opening ($3) to the latest closing ($4) plus
// the longest run (a run that ended after the closing may have started
// before it). Rows that were retried (back to 'pendiente') keep an old
// fecha_out but are not finished, so they are out; a legacy row without
// fecha_out is in no span.
const FINISHED_NEAR_SPANS = `
  a.estatus IN ('listo', 'error')
  AND a.fecha_out >= ${wallClockAtOrBefore("$3::timestamptz")}
  AND a.fecha_out <= ${wallClockAtOrAfter(`$4::timestamptz + make_interval(secs => ${MAX_RUN_SECONDS})`)}`;

// fecha_out_wall is the raw column, for an ORDER BY that the index serves.
const RUN_COLUMNS = `
  a.id, a.estatus, a.tokens_in, a.tokens_out,
  coalesce(a.tiempo_ejecucion, 0)::float8 AS seconds,
  a.fecha_out AS fecha_out_wall,
  a.fecha_out::timestamptz AS finished_at`;

// Those rows as runs, with their outcomes. Each outcome is looked up by its
// key (OFFSET 0 keeps the planner from turning the lookups into a hash join
// over fila_llm_outcome, which holds every prompt that ever ran): the cost
// follows the span's runs, never the table's size.
const RUNS = `
  SELECT ${RUN_COLUMNS},
         o.finish_reason, o.server_tokens_out, o.load_seconds, o.prompt_eval_seconds, o.eval_seconds, o.error_message, o.server
    FROM fila_llm_anahuac a
    LEFT JOIN LATERAL (
      SELECT o.finish_reason, o.server_tokens_out, o.load_seconds::float8 AS load_seconds,
             o.prompt_eval_seconds::float8 AS prompt_eval_seconds, o.eval_seconds::float8 AS eval_seconds,
             o.error_message, o.server
        FROM fila_llm_outcome o WHERE o.prompt_id = a.id OFFSET 0) o ON true
   WHERE ${FINISHED_NEAR_SPANS}`;

// The same without their outcomes, for a query that keeps only a few of them
// and looks up the outcomes of those.
const BARE_RUNS = `SELECT ${RUN_COLUMNS} FROM fila_llm_anahuac a WHERE ${FINISHED_NEAR_SPANS}`;

// The server's own generation speed over a set of runs: its output tokens over
// its generation time, where it reports both (an aggregate over RUNS' rows).
const GENERATION_TOKENS_PER_SECOND = `sum(server_tokens_out) FILTER (WHERE eval_seconds > 0)::float8
  / nullif(sum(eval_seconds) FILTER (WHERE server_tokens_out IS NOT NULL), 0)`;

// The finish reasons of a generation the worker cut (src/llm/errors.ts).
const CUT_GENERATIONS = "('repetition', 'stall', 'timeout', 'too_large')";

// A run belongs to a span if it overlaps it (see src/ops/nights.ts): it
// finished at or after the opening and started before the closing. $1 and $2
// are the spans' openings and closings as two arrays, $3 and $4 the earliest
// opening and the latest closing. With one span, the first two lines are the
// whole test, and the planner drops the EXISTS (the parameters are constants
// to it), which would otherwise cost a function scan per row.
const IN_SPANS = `
  r.finished_at >= $3::timestamptz
  AND r.finished_at - make_interval(secs => r.seconds) < $4::timestamptz
  AND (cardinality($1::timestamptz[]) = 1
       OR EXISTS (SELECT 1 FROM unnest($1::timestamptz[], $2::timestamptz[]) AS w(opens_at, closes_at)
                   WHERE r.finished_at >= w.opens_at
                     AND r.finished_at - make_interval(secs => r.seconds) < w.closes_at))`;

/** $1–$4 of RUNS and IN_SPANS: the openings, the closings, the earliest opening, the latest closing. */
function spanParams(spans: Span[]): [Date[], Date[], Date | null, Date | null] {
  const opens = spans.map((s) => s.opensAt);
  const closes = spans.map((s) => s.closesAt);
  const earliest = opens.reduce<Date | null>((m, d) => (m === null || d < m ? d : m), null);
  const latest = closes.reduce<Date | null>((m, d) => (m === null || d > m ? d : m), null);
  return [opens, closes, earliest, latest];
}

export interface RunStats {
  listo: number;
  errors: number;
  tokensIn: number;
  tokensOut: number;
  /** Sum of tiempo_ejecucion over 'listo' and 'error' runs: the time the LLM was busy. */
  busySeconds: number;
  /** Sum of tiempo_ejecucion over 'listo' runs only. */
  listoSeconds: number;
  /** tiempo_ejecucion of the 'listo' runs (errors include timeouts, which would skew it). */
  medianSeconds: number | null;
  p95Seconds: number | null;
  maxSeconds: number | null;
  /** 'listo' answers that a token limit cut short (finish_reason 'length'), and their LLM time. */
  cutShort: number;
  cutShortSeconds: number;
  /** Generations the worker cut (a loop, a stall, the timeout, the size limit), and the LLM time they took. */
  generationsCut: number;
  generationsCutSeconds: number;
  /** Prompts the server trimmed or refused as longer than its context. */
  truncatedInputs: number;
  /** The server's own generation speed: its output tokens over its generation time, where it reports both. */
  generationTokensPerSecond: number | null;
  /** Model load time the server reported inside the runs (Ollama's load_duration). */
  loadSeconds: number;
  /** The median of the server's own time per 'listo' prompt (reading + generating), where it reports it. */
  medianServerSeconds: number | null;
  /** When the last of these runs finished. */
  lastFinishedAt: Date | null;
}

/** Counts, tokens and times of the runs that overlap any of these spans. */
export async function runStats(db: Queryable, spans: Span[]): Promise<RunStats> {
  const { rows } = await db.query(
    `SELECT count(*) FILTER (WHERE estatus = 'listo')::int AS listo,
            count(*) FILTER (WHERE estatus = 'error')::int AS errors,
            coalesce(sum(tokens_in), 0)::float8 AS tokens_in,
            coalesce(sum(tokens_out), 0)::float8 AS tokens_out,
            coalesce(sum(seconds), 0)::float8 AS busy_seconds,
            coalesce(sum(seconds) FILTER (WHERE estatus = 'listo'), 0)::float8 AS listo_seconds,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE estatus = 'listo') AS median,
            percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE estatus = 'listo') AS p95,
            max(seconds) FILTER (WHERE estatus = 'listo') AS max,
            count(*) FILTER (WHERE estatus = 'listo' AND finish_reason = 'length')::int AS cut_short,
            coalesce(sum(seconds) FILTER (WHERE estatus = 'listo' AND finish_reason = 'length'), 0)::float8 AS cut_short_seconds,
            count(*) FILTER (WHERE finish_reason IN ${CUT_GENERATIONS})::int AS generations_cut,
            coalesce(sum(seconds) FILTER (WHERE finish_reason IN ${CUT_GENERATIONS}), 0)::float8 AS generations_cut_seconds,
            count(*) FILTER (WHERE finish_reason = 'truncated_input')::int AS truncated_inputs,
            ${GENERATION_TOKENS_PER_SECOND} AS generation_tokens_per_second,
            coalesce(sum(load_seconds), 0)::float8 AS load_seconds,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY prompt_eval_seconds + eval_seconds) FILTER (WHERE estatus = 'listo') AS median_server_seconds,
            max(finished_at) AS last_finished_at
       FROM (${RUNS}) r
      WHERE ${IN_SPANS}`,
    spanParams(spans),
  );
  const r = rows[0];
  return {
    listo: r.listo,
    errors: r.errors,
    tokensIn: r.tokens_in,
    tokensOut: r.tokens_out,
    busySeconds: r.busy_seconds,
    listoSeconds: r.listo_seconds,
    medianSeconds: r.median,
    p95Seconds: r.p95,
    maxSeconds: r.max,
    cutShort: r.cut_short,
    cutShortSeconds: r.cut_short_seconds,
    generationsCut: r.generations_cut,
    generationsCutSeconds: r.generations_cut_seconds,
    truncatedInputs: r.truncated_inputs,
    generationTokensPerSecond: r.generation_tokens_per_second,
    loadSeconds: r.load_seconds,
    medianServerSeconds: r.median_server_seconds,
    lastFinishedAt: r.last_finished_at,
  };
}

export interface PromptRun {
  id: number;
  estatus: "listo" | "error";
  seconds: number;
  startedAt: Date;
  finishedAt: Date;
  tokensIn: number | null;
  tokensOut: number | null;
  errorMessage: string | null;
  /** The server (lane) that ran it; null for runs from before lanes, or that never reached a server. */
  server: string | null;
}

function promptRun(r: {
  id: number; estatus: "listo" | "error"; seconds: number; finished_at: Date; tokens_in: number | null; tokens_out: number | null;
  error_message: string | null; server?: string | null;
}): PromptRun {
  return {
    id: r.id,
    estatus: r.estatus,
    seconds: r.seconds,
    startedAt: new Date(r.finished_at.getTime() - r.seconds * 1000),
    finishedAt: r.finished_at,
    tokensIn: r.tokens_in,
    tokensOut: r.tokens_out,
    errorMessage: r.error_message,
    server: r.server ?? null,
  };
}

/** Every run of one span, in the order they finished: the report's timeline. */
export async function runsIn(db: Queryable, span: Span): Promise<PromptRun[]> {
  const { rows } = await db.query(
    `SELECT r.id, r.estatus, r.seconds, r.finished_at, r.tokens_in, r.tokens_out, r.error_message, r.server
       FROM (${RUNS}) r
      WHERE ${IN_SPANS}
      ORDER BY r.finished_at, r.id`,
    spanParams([span]),
  );
  return rows.map(promptRun);
}

export interface LaneRuns {
  /** The server; null for the runs recorded before lanes existed. */
  server: string | null;
  prompts: number;
  /** Its LLM time: tiempo_ejecucion summed over its runs. */
  busySeconds: number;
  /** Its own generation speed where it reports its counts and times, else tiktoken's tokens over its 'listo' time. */
  tokensPerSecond: number | null;
}

/** The runs of one span, per server (lane): how many, the LLM time, the speed. */
export async function runsByServer(db: Queryable, span: Span): Promise<LaneRuns[]> {
  const { rows } = await db.query(
    `SELECT r.server, count(*)::int AS prompts, coalesce(sum(r.seconds), 0)::float8 AS busy_seconds,
            coalesce(
              ${GENERATION_TOKENS_PER_SECOND},
              sum(r.tokens_out) FILTER (WHERE r.estatus = 'listo')::float8 / nullif(sum(r.seconds) FILTER (WHERE r.estatus = 'listo'), 0)
            ) AS tokens_per_second
       FROM (${RUNS}) r
      WHERE ${IN_SPANS}
      GROUP BY r.server
      ORDER BY r.server NULLS FIRST`,
    spanParams([span]),
  );
  return rows.map((r) => ({ server: r.server, prompts: r.prompts, busySeconds: r.busy_seconds, tokensPerSecond: r.tokens_per_second }));
}

/** The `count` longest runs of one span, longest first (then by id): the text report's "slowest prompts". */
export async function slowestRunsIn(db: Queryable, span: Span, count: number): Promise<PromptRun[]> {
  const { rows } = await db.query(
    `SELECT r.id, r.estatus, r.seconds, r.finished_at, r.tokens_in, r.tokens_out, o.error_message
       FROM (SELECT r.* FROM (${BARE_RUNS}) r
              WHERE ${IN_SPANS}
              ORDER BY r.seconds DESC, r.id
              LIMIT $5) r
       LEFT JOIN LATERAL (SELECT o.error_message FROM fila_llm_outcome o WHERE o.prompt_id = r.id OFFSET 0) o ON true
      ORDER BY r.seconds DESC, r.id`,
    [...spanParams([span]), count],
  );
  return rows.map(promptRun);
}

export interface ErrorGroup {
  message: string;
  count: number;
  /** The first few ids, lowest first. */
  exampleIds: number[];
}

// Enough to act on; `SELECT … WHERE estatus = 'error'` gives the rest.
const EXAMPLE_IDS = 5;

/**
 * How many error rows `errorGroups` without spans groups: the most recent
 * ones, so that status stays fast however many errors have piled up.
 */
export const ERROR_SAMPLE_ROWS = 10_000;

/**
 * Rows now in 'error', grouped by their message in fila_llm_outcome, most
 * frequent first: those of these spans, or else the ERROR_SAMPLE_ROWS that
 * failed last (by fecha_out, then id; fila_llm_anahuac_error_idx).
 */
export async function errorGroups(db: Queryable, spans: Span[] | null, limit = 10): Promise<ErrorGroup[]> {
  const { rows } =
    spans === null
      ? await db.query(
          `SELECT coalesce(o.error_message, '(no message recorded)') AS message, count(*)::int AS count,
                  (array_agg(r.id ORDER BY r.id))[1:${EXAMPLE_IDS}] AS example_ids
             FROM (SELECT a.id FROM fila_llm_anahuac a
                    WHERE a.estatus = 'error'
                    ORDER BY a.fecha_out DESC NULLS LAST, a.id DESC
                    LIMIT $1) r
             -- One lookup per sampled row, as in RUNS.
             LEFT JOIN LATERAL (SELECT o.error_message FROM fila_llm_outcome o WHERE o.prompt_id = r.id OFFSET 0) o ON true
            GROUP BY 1
            ORDER BY count(*) DESC, 1
            LIMIT $2`,
          [ERROR_SAMPLE_ROWS, limit],
        )
      : await db.query(
          `SELECT coalesce(r.error_message, '(no message recorded)') AS message, count(*)::int AS count,
                  (array_agg(r.id ORDER BY r.id))[1:${EXAMPLE_IDS}] AS example_ids
             FROM (${RUNS}) r
            WHERE r.estatus = 'error' AND ${IN_SPANS}
            GROUP BY 1
            ORDER BY count(*) DESC, 1
            LIMIT $5`,
          [...spanParams(spans), limit],
        );
  return rows.map((r) => ({ message: r.message, count: r.count, exampleIds: r.example_ids }));
}

export interface RecentTimes {
  /** The median tiempo_ejecucion of the sampled 'listo' runs. */
  medianSeconds: number | null;
  /** The median of the server's own time (reading + generating), where it reports it. */
  medianServerSeconds: number | null;
  /** How many 'listo' runs the medians come from: at most the sample asked for. */
  runs: number;
}

/**
 * The median time per 'listo' prompt over the `sampleRuns` most recent 'listo'
 * runs (by fecha_out) of these spans: a bounded read however busy the nights were.
 */
export async function recentListoTimes(db: Queryable, spans: Span[], sampleRuns: number): Promise<RecentTimes> {
  const { rows } = await db.query(
    `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS median,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY prompt_eval_seconds + eval_seconds) AS median_server,
            count(*)::int AS runs
       FROM (SELECT r.seconds, r.prompt_eval_seconds, r.eval_seconds
               FROM (${RUNS}) r
              WHERE r.estatus = 'listo' AND ${IN_SPANS}
              ORDER BY r.fecha_out_wall DESC
              LIMIT $5) sample`,
    [...spanParams(spans), sampleRuns],
  );
  const r = rows[0];
  return { medianSeconds: r.median, medianServerSeconds: r.median_server, runs: r.runs };
}

export interface QueueCounts {
  pendiente: number;
  listo: number;
  error: number;
  /** Age of the oldest 'pendiente' row (by fecha_in), by the database's clock. */
  oldestPendingSeconds: number | null;
}

/**
 * Rows by estatus (fila_llm_counts: no scan), and how long the oldest pending
 * one has waited. The oldest is the lowest id, the first inserted, read from
 * the head of fila_llm_anahuac_pendiente_idx.
 */
export async function queueCounts(db: Queryable): Promise<QueueCounts> {
  const counts = await countByEstatus(db);
  const { rows } = await db.query(
    `SELECT extract(epoch FROM now() - a.fecha_in::timestamptz)::float8 AS oldest_pending_seconds
       FROM fila_llm_anahuac a
      WHERE a.estatus = 'pendiente' AND a.fecha_in IS NOT NULL
      ORDER BY a.id
      LIMIT 1`,
  );
  return { ...counts, oldestPendingSeconds: rows[0]?.oldest_pending_seconds ?? null };
}

/** The database's clock: spans measured against fecha_out must end on it. */
export async function databaseNow(db: Queryable): Promise<Date> {
  const { rows } = await db.query("SELECT now() AS now");
  return rows[0].now;
}
