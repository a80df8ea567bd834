/**
 * What the status screen, the morning report and window_gate's progress and
 * summary lines read: counts, times and errors of the runs of a night.
 *
 * Local time: fecha_in and fecha_out are TIMESTAMP WITHOUT TIME ZONE, written
 * by now() in the writer's session TimeZone. Every query here reads them as
 * instants with `AT TIME ZONE current_setting('TimeZone')`, so it assumes this
 * session has the writers' TimeZone; the worker and the CLI both use the
 * database's default (set one with ALTER DATABASE … SET timezone). Windows
 * and nights come in as instants (timestamptz), computed in WINDOW_TZ by
 * src/ops/nights.ts and src/local_time.ts.
 */
import type { Queryable } from "./queryable";

/** A span of time [opensAt, closesAt): a night, or the queue's current open period. */
export interface Span {
  opensAt: Date;
  closesAt: Date;
}

// Finished rows, with fecha_out as an instant. Rows that were retried (back
// to 'pendiente') keep an old fecha_out but are not finished, so they are out.
// A legacy row without fecha_out is in no span (its finished_at is NULL).
const RUNS = `
  SELECT a.id, a.estatus, a.tokens_in, a.tokens_out,
         coalesce(a.tiempo_ejecucion, 0)::float8 AS seconds,
         a.fecha_out AT TIME ZONE current_setting('TimeZone') AS finished_at,
         o.finish_reason, o.server_tokens_out, o.load_seconds::float8 AS load_seconds,
         o.prompt_eval_seconds::float8 AS prompt_eval_seconds, o.eval_seconds::float8 AS eval_seconds
    FROM fila_llm_anahuac a
    LEFT JOIN fila_llm_outcome o ON o.prompt_id = a.id
   WHERE a.estatus IN ('listo', 'error')`;

// The finish reasons of a generation the worker cut (src/llm/errors.ts).
const CUT_GENERATIONS = "('repetition', 'stall', 'timeout', 'too_large')";

// A run belongs to a span if it overlaps it (see src/ops/nights.ts). $1 and
// $2 are the spans' openings and closings as two arrays.
const IN_SPANS = `
  EXISTS (SELECT 1 FROM unnest($1::timestamptz[], $2::timestamptz[]) AS w(opens_at, closes_at)
           WHERE r.finished_at >= w.opens_at
             AND r.finished_at - make_interval(secs => r.seconds) < w.closes_at)`;

function spanParams(spans: Span[]): [Date[], Date[]] {
  return [spans.map((s) => s.opensAt), spans.map((s) => s.closesAt)];
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
            sum(server_tokens_out) FILTER (WHERE eval_seconds > 0)::float8 / nullif(sum(eval_seconds) FILTER (WHERE server_tokens_out IS NOT NULL), 0)
              AS generation_tokens_per_second,
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
}

/** Every run of one span, in the order they finished: the report's timeline. */
export async function runsIn(db: Queryable, span: Span): Promise<PromptRun[]> {
  const { rows } = await db.query(
    `SELECT r.id, r.estatus, r.seconds, r.finished_at, r.tokens_in, r.tokens_out, o.error_message
       FROM (${RUNS}) r LEFT JOIN fila_llm_outcome o ON o.prompt_id = r.id
      WHERE ${IN_SPANS}
      ORDER BY r.finished_at, r.id`,
    spanParams([span]),
  );
  return rows.map((r) => ({
    id: r.id,
    estatus: r.estatus,
    seconds: r.seconds,
    startedAt: new Date(r.finished_at.getTime() - r.seconds * 1000),
    finishedAt: r.finished_at,
    tokensIn: r.tokens_in,
    tokensOut: r.tokens_out,
    errorMessage: r.error_message,
  }));
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
 * Rows now in 'error', grouped by their message in fila_llm_outcome, most
 * frequent first; only those of these spans if given.
 */
export async function errorGroups(db: Queryable, spans: Span[] | null, limit = 10): Promise<ErrorGroup[]> {
  const [opens, closes] = spans === null ? [null, null] : spanParams(spans);
  const { rows } = await db.query(
    `SELECT coalesce(o.error_message, '(no message recorded)') AS message, count(*)::int AS count,
            (array_agg(r.id ORDER BY r.id))[1:${EXAMPLE_IDS}] AS example_ids
       FROM (${RUNS}) r
       LEFT JOIN fila_llm_outcome o ON o.prompt_id = r.id
      WHERE r.estatus = 'error' AND ($1::timestamptz[] IS NULL OR ${IN_SPANS})
      GROUP BY 1
      ORDER BY count(*) DESC, 1
      LIMIT $3`,
    [opens, closes, limit],
  );
  return rows.map((r) => ({ message: r.message, count: r.count, exampleIds: r.example_ids }));
}

export interface QueueCounts {
  pendiente: number;
  listo: number;
  error: number;
  /** Age of the oldest 'pendiente' row (by fecha_in), by the database's clock. */
  oldestPendingSeconds: number | null;
}

/** Rows by estatus, and how long the oldest pending one has waited. One scan. */
export async function queueCounts(db: Queryable): Promise<QueueCounts> {
  const { rows } = await db.query(
    `SELECT count(*) FILTER (WHERE estatus = 'pendiente')::int AS pendiente,
            count(*) FILTER (WHERE estatus = 'listo')::int AS listo,
            count(*) FILTER (WHERE estatus = 'error')::int AS error,
            extract(epoch FROM now() - (min(fecha_in) FILTER (WHERE estatus = 'pendiente')
                                        AT TIME ZONE current_setting('TimeZone')))::float8 AS oldest_pending_seconds
       FROM fila_llm_anahuac`,
  );
  const r = rows[0];
  return { pendiente: r.pendiente, listo: r.listo, error: r.error, oldestPendingSeconds: r.oldest_pending_seconds };
}

/** The database's clock: spans measured against fecha_out must end on it. */
export async function databaseNow(db: Queryable): Promise<Date> {
  const { rows } = await db.query("SELECT now() AS now");
  return rows[0].now;
}
