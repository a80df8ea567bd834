/**
 * Every query on fila_llm_anahuac and fila_llm_outcome that the worker runs.
 * Writes are guarded by estatus = 'pendiente', so a duplicated or late job
 * never overwrites a finished row.
 */
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

/**
 * How many rows are pendiente, counting no further than `upTo`: the legacy
 * table has no index on estatus, so the scan stops as soon as it has enough.
 */
export async function countPendingUpTo(db: Queryable, upTo: number): Promise<number> {
  const { rows } = await db.query(
    "SELECT count(*)::int AS n FROM (SELECT 1 FROM fila_llm_anahuac WHERE estatus = 'pendiente' LIMIT $1) AS p",
    [upTo],
  );
  return rows[0].n;
}

export interface Success {
  id: number;
  respuesta: string;
  tokensIn: number;
  tokensOut: number;
  seconds: number;
  failures: number;
  provider: string;
  model: string;
  serverTokensIn: number | null;
  serverTokensOut: number | null;
  startedAt: Date;
}

const OUTCOME_UPSERT = `
  ON CONFLICT (prompt_id) DO UPDATE SET
    estatus = excluded.estatus, error_message = excluded.error_message, attempts = excluded.attempts,
    provider = excluded.provider, model = excluded.model,
    server_tokens_in = excluded.server_tokens_in, server_tokens_out = excluded.server_tokens_out,
    http_status = excluded.http_status, started_at = excluded.started_at, finished_at = excluded.finished_at`;

/** Writes the answer and marks the row 'listo', with its outcome, in one statement. False if the row was no longer pending. */
export async function recordSuccess(db: Queryable, s: Success): Promise<boolean> {
  const { rowCount } = await db.query(
    `WITH done AS (
       UPDATE fila_llm_anahuac
          SET respuesta = $2, tokens_in = $3, tokens_out = $4, fecha_out = now(),
              tiempo_ejecucion = round($5::numeric, 2), estatus = 'listo'
        WHERE id = $1 AND estatus = 'pendiente'
       RETURNING id)
     INSERT INTO fila_llm_outcome AS o
       (prompt_id, estatus, error_message, attempts, provider, model, server_tokens_in, server_tokens_out,
        http_status, started_at, finished_at)
     SELECT id, 'listo', NULL, $6, $7, $8, $9, $10, 200, $11, now() FROM done
     ${OUTCOME_UPSERT}`,
    [s.id, s.respuesta, s.tokensIn, s.tokensOut, s.seconds, s.failures, s.provider, s.model, s.serverTokensIn, s.serverTokensOut, s.startedAt],
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
  httpStatus: number | null;
  startedAt: Date | null;
}

/** Marks the row 'error' for good, with its message in fila_llm_outcome. False if the row was no longer pending. */
export async function recordFinalFailure(db: Queryable, f: Failure): Promise<boolean> {
  const { rowCount } = await db.query(
    `WITH failed AS (
       UPDATE fila_llm_anahuac
          SET estatus = 'error', fecha_out = now(), tiempo_ejecucion = round($2::numeric, 2)
        WHERE id = $1 AND estatus = 'pendiente'
       RETURNING id)
     INSERT INTO fila_llm_outcome AS o
       (prompt_id, estatus, error_message, attempts, provider, model, server_tokens_in, server_tokens_out,
        http_status, started_at, finished_at)
     SELECT id, 'error', $3, $4, $5, $6, NULL, NULL, $7, $8, now() FROM failed
     ${OUTCOME_UPSERT}`,
    [f.id, f.seconds, f.message, f.failures, f.provider, f.model, f.httpStatus, f.startedAt],
  );
  return rowCount === 1;
}

/** Notes a failure that will be retried: the row stays 'pendiente', the outcome shows the last error. */
export async function recordRetryableFailure(db: Queryable, f: Failure): Promise<void> {
  await db.query(
    `INSERT INTO fila_llm_outcome AS o
       (prompt_id, estatus, error_message, attempts, provider, model, server_tokens_in, server_tokens_out,
        http_status, started_at, finished_at)
     SELECT id, 'pendiente', $2, $3, $4, $5, NULL, NULL, $6, $7, now()
       FROM fila_llm_anahuac WHERE id = $1 AND estatus = 'pendiente'
     ${OUTCOME_UPSERT}`,
    [f.id, f.message, f.failures, f.provider, f.model, f.httpStatus, f.startedAt],
  );
}

/**
 * Puts the prompt back in the queue as a fresh job (graphile-worker's own
 * attempt count and exp() backoff are not used; see retry_policy.ts).
 * Called from inside the running job: add_job gives the job key to the new
 * job, and the running one is deleted when it completes.
 */
export async function requeuePrompt(db: Queryable, id: number, failures: number, runAt: Date): Promise<void> {
  await db.query(
    `SELECT graphile_worker.add_job('process_prompt', json_build_object('id', $1::int, 'failures', $2::int),
        run_at := $3, job_key := fila_llm_job_key($1), flags := ARRAY['llm'])`,
    [id, failures, runAt],
  );
}
