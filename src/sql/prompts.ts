/**
 * Queries on the prompts themselves: the rows of fila_llm_anahuac and their
 * outcomes in fila_llm_outcome. The worker's writes are guarded by
 * estatus = 'pendiente', so a duplicated or late job never overwrites a
 * finished row. The operators' retry and cancel are SQL functions of
 * migrations/0007 (SQL users get the same powers); they are called from here.
 */
import type { ServerTimings } from "../llm/protocols";
import type { Queryable } from "./queryable";

export interface PendingPrompt {
  id: number;
  prompt: string;
}

/** The row, if it still exists and is still 'pendiente'. */
export async function loadPendingPrompt(db: Queryable, id: number): Promise<PendingPrompt | null> {
  const { rows } = await db.query("SELECT id, prompt FROM fila_llm_anahuac WHERE id = $1 AND estatus = 'pendiente'", [id]);
  return rows[0] ?? null;
}

export interface EstatusCounts {
  pendiente: number;
  listo: number;
  error: number;
}

/**
 * Rows by estatus, exact, without reading the table: the sums of the deltas
 * that the triggers append to fila_llm_counts (migrations/0015), at most a
 * minute's worth of rows since window_gate's last compactCounts. int: ids are
 * SERIAL, so no count passes 2^31.
 */
export async function countByEstatus(db: Queryable): Promise<EstatusCounts> {
  const { rows } = await db.query(
    `SELECT coalesce(sum(pendiente), 0)::int AS pendiente, coalesce(sum(listo), 0)::int AS listo,
            coalesce(sum(error), 0)::int AS error
       FROM fila_llm_counts`,
  );
  return rows[0];
}

/** Every 'pendiente' row: for the log lines at the window's opening and closing. */
export async function countPending(db: Queryable): Promise<number> {
  return (await countByEstatus(db)).pendiente;
}

/**
 * How many rows are pendiente, counting no further than `upTo`: the first
 * `upTo` entries of fila_llm_anahuac_pendiente_idx, however many rows are
 * finished.
 */
export async function countPendingUpTo(db: Queryable, upTo: number): Promise<number> {
  const { rows } = await db.query(
    "SELECT count(*)::int AS n FROM (SELECT 1 FROM fila_llm_anahuac WHERE estatus = 'pendiente' ORDER BY id LIMIT $1) AS p",
    [upTo],
  );
  return rows[0].n;
}

/**
 * Folds fila_llm_counts into one row (fila_llm_compact_counts), so that
 * countByEstatus sums few rows; returns how many rows were folded. window_gate
 * calls it every minute.
 */
export async function compactCounts(db: Queryable): Promise<number> {
  const { rows } = await db.query("SELECT fila_llm_compact_counts() AS folded");
  return rows[0].folded;
}

export interface Success {
  id: number;
  respuesta: string;
  tokensIn: number;
  tokensOut: number;
  seconds: number;
  failures: number;
  provider: string;
  /** The model that was asked for (LLM_MODEL). */
  model: string;
  /** The server (lane) that answered: its URL without credentials. */
  server: string;
  /** The model name the server reported. */
  serverModel: string | null;
  serverTokensIn: number | null;
  serverTokensOut: number | null;
  /** The server's own: "stop", or "length" for an answer a token limit cut short. */
  finishReason: string | null;
  timings: ServerTimings;
  startedAt: Date;
}

// The outcome columns every write sets, in this order ($n numbering starts after the legacy row's own).
const OUTCOME_COLUMNS = [
  "estatus", "error_message", "attempts", "provider", "model", "server_tokens_in", "server_tokens_out",
  "http_status", "finish_reason", "cut_answer_head", "cut_answer_tail", "started_at",
  "server_model", "load_seconds", "prompt_eval_seconds", "eval_seconds", "server",
] as const;
const OUTCOME_UPSERT = `
  ON CONFLICT (prompt_id) DO UPDATE SET
    ${OUTCOME_COLUMNS.map((c) => `${c} = excluded.${c}`).join(", ")}, finished_at = excluded.finished_at`;

/** `$from, $from+1, …` for the outcome columns. */
function outcomeParams(from: number): string {
  return OUTCOME_COLUMNS.map((_, i) => `$${from + i}`).join(", ");
}

// What stays of a cut answer: its beginning and its end, each this many characters.
export const CUT_ANSWER_KEPT_CHARS = 2048;

function cutAnswerEnds(answer: string | null): [string | null, string | null] {
  if (answer === null || answer === "") return [null, null];
  // PostgreSQL TEXT cannot hold NUL.
  const clean = answer.replaceAll("\u0000", "\uFFFD");
  return [clean.slice(0, CUT_ANSWER_KEPT_CHARS), clean.slice(-CUT_ANSWER_KEPT_CHARS)];
}

/** Writes the answer and marks the row 'listo', with its outcome, in one statement. False if the row was no longer pending. */
export async function recordSuccess(db: Queryable, s: Success): Promise<boolean> {
  const { rowCount } = await db.query(
    `WITH done AS (
       UPDATE fila_llm_anahuac
          SET respuesta = $2, tokens_in = $3, tokens_out = $4, fecha_out = now(),
              tiempo_ejecucion = round($5::numeric, 2), estatus = 'listo'
        WHERE id = $1 AND estatus = 'pendiente'
       RETURNING id)
     INSERT INTO fila_llm_outcome AS o (prompt_id, ${OUTCOME_COLUMNS.join(", ")}, finished_at)
     SELECT id, ${outcomeParams(6)}, now() FROM done
     ${OUTCOME_UPSERT}`,
    [
      s.id, s.respuesta, s.tokensIn, s.tokensOut, s.seconds,
      "listo", null, s.failures, s.provider, s.model, s.serverTokensIn, s.serverTokensOut, 200, s.finishReason, null, null, s.startedAt,
      s.serverModel, s.timings.loadSeconds, s.timings.promptEvalSeconds, s.timings.evalSeconds, s.server,
    ],
  );
  return rowCount === 1;
}

export interface Failure {
  id: number;
  message: string;
  /** Failures counted against this prompt, this one included. */
  failures: number;
  /** Wall time of the last LLM call, or 0 if none was made. */
  seconds: number;
  provider: string;
  model: string;
  /** The server (lane) the call went to, or null if none was made. */
  server: string | null;
  httpStatus: number | null;
  /** What ended the call (an LlmError kind, or "empty_prompt"). */
  finishReason: string;
  /** What a cut generation had produced; its two ends are kept. */
  partialAnswer: string | null;
  startedAt: Date | null;
}

function failureValues(f: Failure, estatus: "error" | "pendiente"): unknown[] {
  const [head, tail] = cutAnswerEnds(f.partialAnswer);
  return [estatus, f.message, f.failures, f.provider, f.model, null, null, f.httpStatus, f.finishReason, head, tail, f.startedAt, null, null, null, null, f.server];
}

/** Marks the row 'error' for good, with its message in fila_llm_outcome. False if the row was no longer pending. */
export async function recordFinalFailure(db: Queryable, f: Failure): Promise<boolean> {
  const { rowCount } = await db.query(
    `WITH failed AS (
       UPDATE fila_llm_anahuac
          SET estatus = 'error', fecha_out = now(), tiempo_ejecucion = round($2::numeric, 2)
        WHERE id = $1 AND estatus = 'pendiente'
       RETURNING id)
     INSERT INTO fila_llm_outcome AS o (prompt_id, ${OUTCOME_COLUMNS.join(", ")}, finished_at)
     SELECT id, ${outcomeParams(3)}, now() FROM failed
     ${OUTCOME_UPSERT}`,
    [f.id, f.seconds, ...failureValues(f, "error")],
  );
  return rowCount === 1;
}

/** Notes a failure that will be retried: the row stays 'pendiente', the outcome shows the last error. */
export async function recordRetryableFailure(db: Queryable, f: Failure): Promise<void> {
  await db.query(
    `INSERT INTO fila_llm_outcome AS o (prompt_id, ${OUTCOME_COLUMNS.join(", ")}, finished_at)
     SELECT id, ${outcomeParams(2)}, now()
       FROM fila_llm_anahuac WHERE id = $1 AND estatus = 'pendiente'
     ${OUTCOME_UPSERT}`,
    [f.id, ...failureValues(f, "pendiente")],
  );
}

/** The estatus of one row, or null if there is no such row (for the CLI's messages). */
export async function promptEstatus(db: Queryable, id: number): Promise<string | null> {
  const { rows } = await db.query("SELECT estatus FROM fila_llm_anahuac WHERE id = $1", [id]);
  return rows[0]?.estatus ?? null;
}

/** fila_llm_retry: one 'error' row back to 'pendiente'; false if it was not in 'error'. */
export async function retryPrompt(db: Queryable, id: number): Promise<boolean> {
  const { rows } = await db.query("SELECT fila_llm_retry($1) AS ok", [id]);
  return rows[0].ok;
}

/** fila_llm_retry_errors: every 'error' row (or those failed since `since`) back; returns how many. */
export async function retryErrors(db: Queryable, since: Date | null): Promise<number> {
  const { rows } = await db.query("SELECT fila_llm_retry_errors($1) AS n", [since]);
  return rows[0].n;
}

/** fila_llm_cancel: a 'pendiente' row to 'error' ("cancelled by operator"), its job removed. */
export async function cancelPrompt(db: Queryable, id: number): Promise<boolean> {
  const { rows } = await db.query("SELECT fila_llm_cancel($1) AS ok", [id]);
  return rows[0].ok;
}
