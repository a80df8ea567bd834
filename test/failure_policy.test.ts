/**
 * The failure policy, row for row as docs/architecture.md states it
 * ("Retries without graphile-worker's back-off"), and its delays.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import {
  decideFailure,
  needsServerFacts,
  outageBackoffSeconds,
  promptRetryDelaySeconds,
  type FailureDecision,
  type FailureFacts,
} from "../src/failure_policy";
import type { LlmErrorKind } from "../src/llm/errors";
import { projectRoot } from "../src/paths";

const settings = { maxAttempts: 5, retryDelaySeconds: 5, outageMaxBackoffSeconds: 60 };

function error(kind: LlmErrorKind, httpStatus: number | null = null, retryAfterSeconds: number | null = null) {
  return { kind, message: `${kind} ${httpStatus ?? ""}`.trim(), httpStatus, retryAfterSeconds };
}

// A server that answers its probe, while this is the only prompt failing and plenty are pending.
const serverUp = { serverReachable: true, failingPromptsInARow: 1, pendingPrompts: 3 };

interface Case {
  facts: FailureFacts;
  expected: Partial<FailureDecision>;
}

/** Keyed by the first cell of the rows of docs/architecture.md's table, in its order. */
const table: [string, Case[]][] = [
  ["HTTP 400, 413 or 422, or an answer over `LLM_MAX_RESPONSE_BYTES`", [
    { facts: { error: error("rejected", 400), failuresBefore: 0 }, expected: { action: "fail", failures: 1, message: "rejected 400" } },
    { facts: { error: error("rejected", 413), failuresBefore: 2 }, expected: { action: "fail", failures: 3 } },
    { facts: { error: error("rejected", 422), failuresBefore: 0 }, expected: { action: "fail", failures: 1 } },
    { facts: { error: error("too_large"), failuresBefore: 0 }, expected: { action: "fail", failures: 1 } },
  ]],
  ["a prompt longer than the server's context, refused or trimmed", [
    { facts: { error: error("truncated_input", 400), failuresBefore: 0 }, expected: { action: "fail", failures: 1 } },
    { facts: { error: error("truncated_input"), failuresBefore: 1 }, expected: { action: "fail", failures: 2 } },
  ]],
  ["the answer became a loop (the repetition guard)", [
    { facts: { error: error("repetition"), failuresBefore: 0 }, expected: { action: "fail", failures: 1, message: "repetition" } },
    // Even the last prompt left, which an outage would spare: a loop is never an outage.
    { facts: { error: error("repetition"), failuresBefore: 2, ...serverUp, pendingPrompts: 1 }, expected: { action: "fail", failures: 3 } },
  ]],
  ["still generating at `LLM_TIMEOUT_SECONDS`", [
    { facts: { error: error("timeout"), failuresBefore: 0 }, expected: { action: "fail", failures: 1 } },
  ]],
  ["refused or reset connection, 5xx, cut-off body, no answer within `LLM_TIMEOUT_SECONDS`, or a stall, and the health probe fails too", [
    { facts: { error: error("stall"), failuresBefore: 0, serverReachable: false }, expected: { action: "keep_place", cause: "outage", breaker: "unavailable" } },
    { facts: { error: error("unavailable"), failuresBefore: 1, serverReachable: false }, expected: { action: "keep_place", cause: "outage", breaker: "unavailable" } },
    { facts: { error: error("unavailable", 503), failuresBefore: 0, serverReachable: false }, expected: { action: "keep_place", cause: "outage", breaker: "unavailable" } },
  ]],
  ["HTTP 429", [
    { facts: { error: error("unavailable", 429, 7), failuresBefore: 0 }, expected: { action: "keep_place", cause: "outage", breaker: "unavailable" } },
  ]],
  ["the same failures while the health probe answers", [
    { facts: { error: error("unavailable", 500), failuresBefore: 0, ...serverUp }, expected: { action: "retry", failures: 1, delaySeconds: 5 } },
    { facts: { error: error("unavailable"), failuresBefore: 1, ...serverUp }, expected: { action: "retry", failures: 2, delaySeconds: 10 } },
    { facts: { error: error("stall"), failuresBefore: 0, ...serverUp }, expected: { action: "retry", failures: 1, delaySeconds: 5 } },
    // Retry-After is honoured within the outage cap.
    { facts: { error: error("unavailable", 503, 30), failuresBefore: 0, ...serverUp }, expected: { action: "retry", failures: 1, delaySeconds: 30 } },
    { facts: { error: error("unavailable", 503, 3600), failuresBefore: 0, ...serverUp }, expected: { action: "retry", failures: 1, delaySeconds: 60 } },
  ]],
  ["the same, for the 3rd different prompt in a row with no success between", [
    {
      facts: { error: error("unavailable", 500), failuresBefore: 0, serverReachable: true, failingPromptsInARow: 3, pendingPrompts: 3 },
      expected: { action: "keep_place", cause: "outage", breaker: "unavailable" },
    },
    {
      facts: { error: error("unavailable", 500), failuresBefore: 0, serverReachable: true, failingPromptsInARow: 2, pendingPrompts: 3 },
      expected: { action: "retry", failures: 1 },
    },
  ]],
  ["the same, with fewer than 3 prompts pending and every one of them failing", [
    {
      facts: { error: error("unavailable", 503), failuresBefore: 0, serverReachable: true, failingPromptsInARow: 1, pendingPrompts: 1 },
      expected: { action: "keep_place", cause: "outage", breaker: "unavailable" },
    },
    {
      facts: { error: error("unavailable", 503), failuresBefore: 0, serverReachable: true, failingPromptsInARow: 2, pendingPrompts: 2 },
      expected: { action: "keep_place", cause: "outage", breaker: "unavailable" },
    },
    {
      facts: { error: error("unavailable", 503), failuresBefore: 0, serverReachable: true, failingPromptsInARow: 1, pendingPrompts: 2 },
      expected: { action: "retry", failures: 1 },
    },
  ]],
  ["2xx that is not JSON or has no text", [
    { facts: { error: error("bad_response", 200), failuresBefore: 0 }, expected: { action: "retry", failures: 1, delaySeconds: 5 } },
  ]],
  ["a counted failure for the `LLM_MAX_ATTEMPTS`-th time", [
    {
      facts: { error: error("bad_response", 200), failuresBefore: 4 },
      expected: { action: "fail", failures: 5, message: "bad_response 200 (failed 5 times; LLM_MAX_ATTEMPTS=5)" },
    },
    { facts: { error: error("unavailable", 500), failuresBefore: 4, ...serverUp }, expected: { action: "fail", failures: 5 } },
  ]],
  ["the server stopped answering its health probe during the call (llama-server after SIGTERM)", [
    { facts: { error: error("server_lost"), failuresBefore: 1 }, expected: { action: "keep_place", cause: "outage", breaker: "unavailable" } },
  ]],
  ["the model cannot be loaded: the server answers its load with an error (missing, out of memory), or does not answer", [
    { facts: { error: error("load_failed", 500), failuresBefore: 0 }, expected: { action: "keep_place", cause: "misconfigured", breaker: "misconfigured" } },
    { facts: { error: error("load_failed", null), failuresBefore: 2 }, expected: { action: "keep_place", cause: "outage", breaker: "unavailable" } },
  ]],
  ["HTTP 401, 403 or 404", [
    { facts: { error: error("config", 401), failuresBefore: 0 }, expected: { action: "keep_place", cause: "misconfigured", breaker: "misconfigured" } },
    { facts: { error: error("config", 403), failuresBefore: 2 }, expected: { action: "keep_place", cause: "misconfigured", breaker: "misconfigured" } },
    { facts: { error: error("config", 404), failuresBefore: 0 }, expected: { action: "keep_place", cause: "misconfigured", breaker: "misconfigured" } },
  ]],
  ["cancelled (shutdown grace over, the lane lost)", [
    { facts: { error: error("aborted"), failuresBefore: 3 }, expected: { action: "keep_place", cause: "interrupted", breaker: null } },
  ]],
];

/** The first cells of the failure table in docs/architecture.md. */
function documentedRows(): string[] {
  const doc = readFileSync(path.join(projectRoot, "docs", "architecture.md"), "utf8");
  const start = doc.indexOf("| failure | what happens |");
  assert.ok(start >= 0, "docs/architecture.md has the failure table");
  const lines = doc.slice(start).split("\n").slice(2);
  const end = lines.findIndex((l) => !l.startsWith("|"));
  return lines.slice(0, end).map((l) => l.split("|")[1].trim());
}

describe("decideFailure: the failure table of docs/architecture.md, row for row", () => {
  for (const [failure, cases] of table) {
    test(failure, () => {
      for (const { facts, expected } of cases) {
        const decision = decideFailure(facts, settings);
        for (const [key, value] of Object.entries(expected)) {
          assert.deepEqual((decision as Record<string, unknown>)[key], value, `${key} of ${JSON.stringify(decision)} for ${JSON.stringify(facts)}`);
        }
      }
    });
  }

  test("the table here and the table in the docs have the same rows, in the same order", () => {
    assert.deepEqual(documentedRows(), table.map(([failure]) => failure));
  });
});

describe("needsServerFacts", () => {
  test("only a stall, or an unavailable error that is not a 429, needs the server probed", () => {
    assert.equal(needsServerFacts(error("unavailable")), true);
    assert.equal(needsServerFacts(error("unavailable", 503)), true);
    assert.equal(needsServerFacts(error("unavailable", 429)), false);
    assert.equal(needsServerFacts(error("stall")), true);
    for (const kind of ["rejected", "truncated_input", "too_large", "repetition", "timeout", "server_lost", "config", "load_failed", "bad_response", "aborted"] as const) {
      assert.equal(needsServerFacts(error(kind)), false, kind);
    }
  });
});

describe("delays", () => {
  test("a prompt's retries wait base, 2×, 4× … up to 60 s", () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => promptRetryDelaySeconds(n, 5)), [5, 10, 20, 40, 60, 60]);
    assert.deepEqual([1, 2, 3].map((n) => promptRetryDelaySeconds(n, 0.2)), [0.2, 0.4, 0.8]);
    assert.equal(promptRetryDelaySeconds(1, 0), 0);
  });

  test("the outage backoff doubles from 1 s to its cap, and honours Retry-After within the cap", () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => outageBackoffSeconds(n, 60)), [1, 2, 4, 8, 16, 32, 60, 60]);
    assert.deepEqual([1, 2, 3].map((n) => outageBackoffSeconds(n, 3)), [1, 2, 3]);
    assert.equal(outageBackoffSeconds(1, 60, 30), 30);
    assert.equal(outageBackoffSeconds(7, 60, 30), 60);
    assert.equal(outageBackoffSeconds(1, 60, 3600), 60);
  });
});
