/** The outage breaker, on a clock the test moves: back-off, recovery, and one log line per change of state. */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import { OutageBreaker } from "../src/llm/outage_breaker";
import { addLogSink } from "../src/log";

let nowMs = 0;
let lines: string[] = [];
let removeSink: () => void;
beforeEach(() => {
  nowMs = 1_000_000;
  lines = [];
  removeSink = addLogSink((line) => lines.push(line));
});
afterEach(() => removeSink());

const breaker = () => new OutageBreaker(60, () => nowMs);

describe("OutageBreaker", () => {
  test("starts up and lets prompts through", () => {
    const b = breaker();
    assert.equal(b.current, "up");
    assert.equal(b.isBlocked(), false);
  });

  test("each outage failure in a row blocks for 1, 2, 4 … s up to the cap", () => {
    const b = breaker();
    const blockedFor: number[] = [];
    for (let i = 0; i < 8; i++) {
      b.reportUnavailable("ECONNREFUSED");
      blockedFor.push((b.blockedUntil - nowMs) / 1000);
      assert.equal(b.isBlocked(), true);
      nowMs = b.blockedUntil;
      assert.equal(b.isBlocked(), false, "open again when the back-off is over");
    }
    assert.deepEqual(blockedFor, [1, 2, 4, 8, 16, 32, 60, 60]);
    assert.equal(b.current, "unavailable");
  });

  test("the requests in flight on one server failing together are one step of the back-off, not one each", () => {
    const b = breaker();
    for (let i = 0; i < 4; i++) b.reportUnavailable("ECONNRESET");
    assert.equal((b.blockedUntil - nowMs) / 1000, 1, "four slots failing at once: 1 s, not 8 s");
    nowMs = b.blockedUntil;
    b.reportUnavailable("ECONNREFUSED");
    assert.equal((b.blockedUntil - nowMs) / 1000, 2, "the next failure, after the back-off, is the next step");
  });

  test("Retry-After lengthens the back-off, within the cap", () => {
    const b = breaker();
    b.reportUnavailable("429", 20);
    assert.equal((b.blockedUntil - nowMs) / 1000, 20);
    b.reportUnavailable("429", 600);
    assert.equal((b.blockedUntil - nowMs) / 1000, 60);
  });

  test("one warning when it goes down, one line when it comes back, none per attempt", () => {
    const b = breaker();
    for (let i = 0; i < 5; i++) b.reportUnavailable("ECONNREFUSED");
    nowMs += 42_000;
    b.reportSuccess();
    const ours = lines.filter((l) => l.includes("[llm]"));
    assert.equal(ours.length, 2, ours.join("\n"));
    assert.match(ours[0], /WARN .*LLM unavailable; prompts wait/);
    assert.match(ours[1], /INFO .*LLM is answering again after 42 s/);
    assert.equal(b.current, "up");
    assert.equal(b.isBlocked(), false);
  });

  test("a configuration fault is its own state, logged as an error once", () => {
    const b = breaker();
    b.reportMisconfigured("model not found");
    b.reportMisconfigured("model not found");
    assert.equal(b.current, "misconfigured");
    assert.equal(lines.filter((l) => /ERROR .*LLM configuration fault/.test(l)).length, 1);
  });

  test("a success resets the back-off and the count of distinct failing prompts", () => {
    const b = breaker();
    assert.deepEqual([b.noteServerSideFailure(1), b.noteServerSideFailure(2), b.noteServerSideFailure(2)], [1, 2, 2]);
    for (let i = 0; i < 4; i++) b.reportUnavailable("503");
    b.reportSuccess();
    assert.equal(b.noteServerSideFailure(3), 1);
    b.reportUnavailable("503");
    assert.equal((b.blockedUntil - nowMs) / 1000, 1, "the back-off starts again at 1 s");
  });
});
