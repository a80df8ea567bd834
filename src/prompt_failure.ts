/**
 * A failed LLM call, from the task's side: the facts the failure policy
 * (src/failure_policy.ts) needs, gathered with as little I/O as the decision
 * allows, and the policy's decision carried out on the row, the job, the
 * outage breaker and the log. The decision itself is the policy's alone.
 */
import type { JobHelpers } from "graphile-worker";
import type { PoolClient } from "pg";
import type { Lane } from "./lane";
import { needsServerFacts, SERVER_FAULT_DISTINCT_PROMPTS, type FailureDecision, type FailureFacts } from "./failure_policy";
import type { LlmError } from "./llm/errors";
import { logger } from "./log";
import { requeuePrompt } from "./sql/jobs";
import { countPendingUpTo, recordFinalFailure, recordRetryableFailure, type Failure } from "./sql/prompts";

const log = logger("prompt");

/** The job's database access, waiting out a database restart (see tasks/process_prompt.ts). */
export type JobDatabase = <T>(what: string, query: (db: PoolClient) => Promise<T>) => Promise<T>;

/** The facts the failure policy needs; the server is probed only when the decision depends on it. */
export async function failureFacts(lane: Lane, database: JobDatabase, id: number, failures: number, e: LlmError): Promise<FailureFacts> {
  const { llm, breaker } = lane;
  const facts: FailureFacts = { error: e, failuresBefore: failures };
  if (!needsServerFacts(e)) return facts;
  facts.serverReachable = await llm.isReachable();
  if (facts.serverReachable) {
    facts.failingPromptsInARow = breaker.noteServerSideFailure(id);
    facts.pendingPrompts = await database("counting the pending prompts", (db) => countPendingUpTo(db, SERVER_FAULT_DISTINCT_PROMPTS));
  }
  return facts;
}

export interface FailedCall {
  lane: Lane;
  helpers: JobHelpers;
  database: JobDatabase;
  id: number;
  /** Failures counted against the prompt before this call. */
  failuresBefore: number;
  error: LlmError;
  seconds: number;
  /** The outcome to record, for this message and count of failures. */
  failure: (message: string, counted: number) => Failure;
  /** Why an interrupted call was cancelled, for the log line. */
  interruptedBy?: string;
}

/** Carries out the policy's decision: the row, the job, the breaker and the log line. */
export async function recordDecision(decision: FailureDecision, call: FailedCall): Promise<void> {
  const { breaker, residency } = call.lane;
  const { helpers, database, id, error: e, seconds } = call;
  switch (decision.action) {
    case "keep_place":
      if (decision.breaker === "unavailable") {
        breaker.reportUnavailable(decision.message, e.retryAfterSeconds);
        // The server may come back without the model: load it again first.
        residency.forget();
      }
      if (decision.breaker === "misconfigured") breaker.reportMisconfigured(decision.message);
      await database("putting it back", (db) => requeuePrompt(db, id, call.failuresBefore, helpers.job.run_at));
      if (decision.cause === "interrupted") {
        log.warn(`prompt ${id} ${call.interruptedBy ?? "interrupted"}; it stays pendiente, uncharged, in its place`, { id, outcome: "interrupted" });
      }
      return;
    case "fail":
      await database("recording the error", (db) => recordFinalFailure(db, call.failure(decision.message, decision.failures)));
      log.info(`prompt ${id} error`, { id, outcome: "error", seconds: round2(seconds), reason: decision.message, attempt: decision.failures });
      return;
    case "retry":
      await database("scheduling its retry", async (db) => {
        await recordRetryableFailure(db, call.failure(decision.message, decision.failures));
        await requeuePrompt(db, id, decision.failures, new Date(Date.now() + decision.delaySeconds * 1000));
      });
      log.info(`prompt ${id} failed; retrying in ${decision.delaySeconds} s`, {
        id, outcome: "retry", seconds: round2(seconds), reason: decision.message, attempt: decision.failures,
      });
      return;
  }
}

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
