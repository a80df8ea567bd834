/**
 * process_prompt: answers one row of fila_llm_anahuac. Load, decide, call, record.
 *
 * Each lane (one LLM server, src/lane.ts) has its own graphile-worker runner,
 * so the executor is built per lane: `processPrompt(lane)` is what that
 * runner's task list holds, and every call it makes goes to that server.
 *
 * LLM failures never throw to graphile-worker: its attempt count and exp()
 * backoff (up to ~6 h) would spend attempts on outages and push retries past
 * the night. Instead the task gathers the facts of a failure, asks
 * src/failure_policy.ts what they mean, and records the outcome or re-adds
 * itself with the same job key, counting in the payload only the failures
 * that are the prompt's own.
 */
import type { JobHelpers, Task } from "graphile-worker";
import { writeBehind } from "../src/answer_writer";
import { callSignals } from "../src/call_signals";
import { appContext } from "../src/context";
import { retryWhileDatabaseAway, withClient } from "../src/db";
import { decideFailure } from "../src/failure_policy";
import { LlmError, type LlmAnswer } from "../src/llm/client";
import { trimmedMessage, trimmedPrompt } from "../src/llm/truncation";
import { logger } from "../src/log";
import type { Lane } from "../src/lane";
import { failureFacts, recordDecision, round2, type JobDatabase } from "../src/prompt_failure";
import { requeuePrompt } from "../src/sql/jobs";
import { loadPendingPrompt, recordFinalFailure, recordSuccess, type Failure } from "../src/sql/prompts";

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
 * On the durable pool, not graphile-worker's (whose commits do not wait for
 * the disk: see src/worker.ts): an answer is on disk once it is logged listo.
 */
function jobDatabase(helpers: JobHelpers, id: number): JobDatabase {
  const { pool } = appContext();
  return (what, query) =>
    retryWhileDatabaseAway(`${what} for prompt ${id}`, () => withClient(pool, query), {
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

/** The process_prompt executor of one lane's runner. */
export default function processPrompt(lane: Lane): Task<"process_prompt"> {
  return (payload, helpers) => answerPrompt(lane, payload, helpers);
}

async function answerPrompt(lane: Lane, payload: unknown, helpers: JobHelpers): Promise<void> {
  const parsed = parsePayload(payload);
  if (!parsed) {
    log.error("job skipped: payload must be {\"id\": <positive integer>}", { jobId: helpers.job.id, payload });
    return;
  }
  const { id, failures } = parsed;
  const { config, gate, session, tokens } = appContext();
  const { llm, breaker, residency } = lane;
  const database = jobDatabase(helpers, id);

  const row = await database("loading the row", (db) => loadPendingPrompt(db, id));
  if (!row) {
    log.info(`prompt ${id} skipped: it is gone or no longer pendiente`, { id, outcome: "skipped" });
    return;
  }
  const failure = (message: string, failuresNow: number, seconds: number, startedAt: Date | null, finishReason: string, e: LlmError | null = null): Failure => ({
    id, message, failures: failuresNow, seconds, startedAt, finishReason, httpStatus: e?.httpStatus ?? null,
    partialAnswer: e?.partialAnswer ?? null, provider: config.llm.provider, model: config.llm.model, server: startedAt === null ? null : lane.server,
  });
  if (row.prompt.trim() === "") {
    await database("recording the error", (db) => recordFinalFailure(db, failure("the prompt is empty", failures, 0, null, "empty_prompt")));
    log.info(`prompt ${id} error: the prompt is empty`, { id, outcome: "error", seconds: 0, attempt: failures });
    return;
  }
  // The fetch was allowed a moment ago; the window may have closed since.
  if (!(await gate.mayStartPrompt(lane))) {
    await database("putting it back", (db) => requeuePrompt(db, id, failures, helpers.job.run_at));
    log.debug(`prompt ${id} put back: the queue closed before its request`, { id });
    return;
  }
  const failed = async (error: unknown, seconds: number, startedAt: Date | null, interruptedBy?: string) => {
    const e = error instanceof LlmError ? error : new LlmError("unavailable", String((error as Error)?.message ?? error));
    const decision = decideFailure(await failureFacts(lane, database, id, failures, e), config.llm);
    await recordDecision(decision, {
      lane, helpers, database, id, failuresBefore: failures, error: e, seconds, interruptedBy,
      failure: (message, counted) => failure(message, counted, seconds, startedAt, e.kind, e),
    });
  };

  // The first prompt of a night loads the model first, so that no prompt's time includes the load.
  try {
    await residency.ensureLoaded();
  } catch (error) {
    await failed(error, 0, null);
    return;
  }
  const startedAt = new Date();
  const startedMs = performance.now();
  let answer: LlmAnswer;
  const cancel = callSignals([helpers.abortSignal, session.laneSignal(lane.server)], config.windowEndPolicy === "cancel" ? gate : null);
  residency.promptStarted();
  try {
    answer = await llm.generate(row.prompt, cancel.signal);
  } catch (error) {
    const by = cancel.windowEnded ? "cancelled at the window's end (WINDOW_END_POLICY=cancel)" : undefined;
    await failed(error, (performance.now() - startedMs) / 1000, startedAt, by);
    return;
  } finally {
    cancel.dispose();
    residency.promptEnded();
  }
  const seconds = (performance.now() - startedMs) / 1000;
  breaker.reportSuccess();

  // PostgreSQL TEXT cannot hold NUL; a model that emits one must not lose its whole answer.
  const respuesta = answer.text.includes("\u0000") ? answer.text.replaceAll("\u0000", "\uFFFD") : answer.text;
  const tokensIn = await tokens.count(row.prompt);
  // A server that trimmed the prompt answered another one: never listo.
  const trim = { promptTokens: tokensIn, reportedPromptTokens: answer.serverTokensIn, contextTokens: config.llm.contextTokens ?? residency.contextTokens };
  if (trimmedPrompt(trim)) {
    const message = trimmedMessage(trim);
    await database("recording the error", (db) => recordFinalFailure(db, failure(message, failures + 1, seconds, startedAt, "truncated_input")));
    log.info(`prompt ${id} error`, { id, outcome: "error", seconds: round2(seconds), reason: message, attempt: failures + 1 });
    return;
  }
  const tokensOut = await tokens.count(respuesta);
  // Stored while the next prompt starts: see src/answer_writer.ts.
  await writeBehind(id, async () => {
    const written = await database("writing the answer", (db) =>
      recordSuccess(db, {
        id, respuesta, tokensIn, tokensOut, seconds, failures, startedAt,
        provider: config.llm.provider, model: config.llm.model, server: lane.server, serverModel: answer.model,
        serverTokensIn: answer.serverTokensIn, serverTokensOut: answer.serverTokensOut, finishReason: answer.finishReason,
        timings: answer.timings,
      }),
    );
    if (written) {
      // An answer a token limit cut short is listo, and says so.
      const cutShort = answer.finishReason === "length" ? { finishReason: "length" } : {};
      log.info(`prompt ${id} listo`, { id, outcome: "listo", seconds: round2(seconds), tokensIn, tokensOut, attempt: failures + 1, ...cutShort });
    } else {
      log.warn(`prompt ${id} answered, but the row was no longer pendiente; the answer was not written`, { id });
    }
  });
}
