/**
 * process_prompt: answers one row of fila_llm_anahuac. Load, decide, call, record.
 *
 * LLM failures never throw to graphile-worker: its attempt count and exp()
 * backoff (up to ~6 h) would spend attempts on outages and push retries past
 * the night. Instead the task records the outcome or re-adds itself with the
 * same job key, counting in the payload only the failures that are the
 * prompt's own (see retry_policy.ts and docs/architecture.md).
 */
import type { JobHelpers, Task } from "graphile-worker";
import type { PoolClient } from "pg";
import { writeBehind } from "../src/answer_writer";
import { appContext } from "../src/context";
import { LlmError, type LlmAnswer } from "../src/llm/client";
import { SERVER_FAULT_DISTINCT_PROMPTS } from "../src/llm/health";
import { logger } from "../src/log";
import { promptRetryDelaySeconds } from "../src/retry_policy";
import { retryWhileDatabaseAway } from "../src/db";
import {
  countPendingUpTo,
  loadPendingPrompt,
  recordFinalFailure,
  recordRetryableFailure,
  recordSuccess,
  requeuePrompt,
  type Failure,
} from "../src/sql/prompts";

declare global {
  namespace GraphileWorker {
    interface Tasks {
      process_prompt: { id: number; failures?: number };
    }
  }
}

const log = logger("prompt");

// A database restart takes seconds; an answer that took minutes of GPU time is
// worth waiting for. Past this, the task gives up and the prompt runs again.
const DATABASE_WAIT_MAX_SECONDS = 600;

/**
 * The job's database access, waiting out a database restart: every query here
 * is safe to repeat (guarded by estatus = 'pendiente', or keyed by job key).
 * Stops waiting when graphile-worker aborts the job (shutdown grace over).
 */
function jobDatabase(helpers: JobHelpers, id: number) {
  return <T>(what: string, query: (db: PoolClient) => Promise<T>): Promise<T> =>
    retryWhileDatabaseAway(`${what} for prompt ${id}`, () => helpers.withPgClient(query), {
      log,
      maxWaitSeconds: DATABASE_WAIT_MAX_SECONDS,
      signal: helpers.abortSignal,
    });
}

/** The payload, checked: graphile_worker.add_job can be called by hand with anything. */
function parsePayload(payload: unknown): { id: number; failures: number } | null {
  const p = payload as { id?: unknown; failures?: unknown } | null;
  if (typeof p !== "object" || p === null || !Number.isInteger(p.id) || (p.id as number) <= 0) return null;
  const failures = Number.isInteger(p.failures) && (p.failures as number) >= 0 ? (p.failures as number) : 0;
  return { id: p.id as number, failures };
}

const processPrompt: Task<"process_prompt"> = async (payload, helpers) => {
  const parsed = parsePayload(payload);
  if (!parsed) {
    log.error("job skipped: payload must be {\"id\": <positive integer>}", { jobId: helpers.job.id, payload });
    return;
  }
  const { id, failures } = parsed;
  const { config, llm, health, gate, session, tokens } = appContext();
  const database = jobDatabase(helpers, id);

  const row = await database("loading the row", (db) => loadPendingPrompt(db, id));
  if (!row) {
    log.info(`prompt ${id} skipped: it is gone or no longer pendiente`, { id, outcome: "skipped" });
    return;
  }
  const failure = (message: string, failuresNow: number, seconds: number, startedAt: Date | null, httpStatus: number | null = null): Failure => ({
    id, message, failures: failuresNow, seconds, startedAt, httpStatus, provider: config.llm.provider, model: config.llm.model,
  });
  if (row.prompt.trim() === "") {
    await database("recording the error", (db) => recordFinalFailure(db, failure("the prompt is empty", failures, 0, null)));
    log.info(`prompt ${id} error: the prompt is empty`, { id, outcome: "error", seconds: 0, attempt: failures });
    return;
  }
  // The fetch was allowed a moment ago; the window may have closed since.
  if (!(await gate.mayStartPrompt())) {
    await database("putting it back", (db) => requeuePrompt(db, id, failures, helpers.job.run_at));
    log.debug(`prompt ${id} put back: the queue closed before its request`, { id });
    return;
  }

  const startedAt = new Date();
  const startedMs = performance.now();
  let answer: LlmAnswer;
  const cancel = linkAbortSignals(helpers.abortSignal, session.leadershipSignal);
  try {
    answer = await llm.generate(row.prompt, cancel.signal);
  } catch (error) {
    const seconds = (performance.now() - startedMs) / 1000;
    await handleFailure(helpers, database, id, failures, error, seconds, (message, counted, status) =>
      failure(message, counted, seconds, startedAt, status),
    );
    return;
  } finally {
    cancel.dispose();
  }
  const seconds = (performance.now() - startedMs) / 1000;
  health.reportSuccess();

  // PostgreSQL TEXT cannot hold NUL; a model that emits one must not lose its whole answer.
  const respuesta = answer.text.includes("\u0000") ? answer.text.replaceAll("\u0000", "\uFFFD") : answer.text;
  const tokensIn = await tokens.count(row.prompt);
  const tokensOut = await tokens.count(respuesta);
  // Stored while the next prompt starts: see src/answer_writer.ts.
  await writeBehind(id, async () => {
    const written = await database("writing the answer", (db) =>
      recordSuccess(db, {
        id, respuesta, tokensIn, tokensOut, seconds, failures, startedAt,
        provider: config.llm.provider, model: answer.model,
        serverTokensIn: answer.serverTokensIn, serverTokensOut: answer.serverTokensOut,
      }),
    );
    if (written) {
      log.info(`prompt ${id} listo`, { id, outcome: "listo", seconds: round2(seconds), tokensIn, tokensOut, attempt: failures + 1 });
    } else {
      log.warn(`prompt ${id} answered, but the row was no longer pendiente; the answer was not written`, { id });
    }
  });
};

/** Decides what an LLM failure means for this prompt, and records it. */
async function handleFailure(
  helpers: JobHelpers,
  database: ReturnType<typeof jobDatabase>,
  id: number,
  failures: number,
  error: unknown,
  seconds: number,
  failure: (message: string, counted: number, httpStatus: number | null) => Failure,
): Promise<void> {
  const { config, llm, health } = appContext();
  const e = error instanceof LlmError ? error : new LlmError("unavailable", String((error as Error)?.message ?? error));
  const putBack = () => database("putting it back", (db) => requeuePrompt(db, id, failures, helpers.job.run_at));

  switch (e.kind) {
    case "aborted":
      // Shutdown grace over, or leadership lost: not the prompt's fault, keep its place.
      await putBack();
      log.warn(`prompt ${id} interrupted; it stays pendiente and runs again`, { id, outcome: "interrupted" });
      return;
    case "config":
      health.reportMisconfigured(e.message);
      await putBack();
      return;
    case "unavailable":
      // A 429, a server that does not even answer its health probe, or one
      // that fails prompt after prompt, is an outage: no prompt pays for it.
      // Otherwise this prompt is the suspect.
      if (
        e.httpStatus === 429 ||
        !(await llm.isReachable()) ||
        health.isServerWideFailure(id, await database("counting the pending prompts", (db) => countPendingUpTo(db, SERVER_FAULT_DISTINCT_PROMPTS)))
      ) {
        health.reportUnavailable(e.message, e.retryAfterSeconds);
        await putBack();
        return;
      }
      break;
    case "prompt":
      await database("recording the error", (db) => recordFinalFailure(db, failure(e.message, failures + 1, e.httpStatus)));
      log.info(`prompt ${id} error`, { id, outcome: "error", seconds: round2(seconds), reason: e.message, attempt: failures + 1 });
      return;
    case "bad_response":
      break;
  }

  const counted = failures + 1;
  if (counted >= config.llm.maxAttempts) {
    const message = `${e.message} (failed ${counted} times; LLM_MAX_ATTEMPTS=${config.llm.maxAttempts})`;
    await database("recording the error", (db) => recordFinalFailure(db, failure(message, counted, e.httpStatus)));
    log.info(`prompt ${id} error`, { id, outcome: "error", seconds: round2(seconds), reason: message, attempt: counted });
    return;
  }
  // A server that says when to come back (Retry-After on a 503, say) is taken at its word, within the outage cap.
  const delaySeconds = Math.max(
    promptRetryDelaySeconds(counted, config.llm.retryDelaySeconds),
    Math.min(e.retryAfterSeconds ?? 0, config.llm.outageMaxBackoffSeconds),
  );
  await database("scheduling its retry", async (db) => {
    await recordRetryableFailure(db, failure(e.message, counted, e.httpStatus));
    await requeuePrompt(db, id, counted, new Date(Date.now() + delaySeconds * 1000));
  });
  log.info(`prompt ${id} failed; retrying in ${delaySeconds} s`, { id, outcome: "retry", seconds: round2(seconds), reason: e.message, attempt: counted });
}

/**
 * One signal that aborts when any of these does. Written out, rather than
 * AbortSignal.any, so that nothing stays attached to the session's
 * long-lived signal after the call: the worker runs 100,000s of prompts.
 */
function linkAbortSignals(...signals: AbortSignal[]): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const abort = () => controller.abort();
  for (const s of signals) {
    if (s.aborted) controller.abort();
    else s.addEventListener("abort", abort, { once: true });
  }
  return { signal: controller.signal, dispose: () => signals.forEach((s) => s.removeEventListener("abort", abort)) };
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

export default processPrompt;
