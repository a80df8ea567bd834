/**
 * A lane's readiness (src/lane.ts), against a real test LLM server and a real
 * database, on a clock the test moves: no prompt while its server backs off,
 * one probe when the back-off is over, and none again until the next failure.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { parseConfig } from "../src/config";
import { Lane } from "../src/lane";
import { databaseBed } from "./support/bed";
import { FakeLlm } from "./support/llm_server";

const db = databaseBed();
let llm: FakeLlm;
before(async () => {
  llm = await FakeLlm.start();
});
after(async () => {
  await llm.stop();
});

describe("a lane", () => {
  test("after an outage it probes its server once when the back-off is over, lets prompts through once the probe answers, and probes again only after the next failure", async () => {
    let nowMs = 1_000_000;
    const lane = new Lane(parseConfig({ LLM_BASE_URL: llm.origin, LLM_MODEL: "test-model" }).llm, llm.origin, db.pool, () => nowMs);
    const probes = () => llm.requests.filter((r) => r.method === "GET").length;
    try {
      assert.equal(await lane.ready(), true, "up: no probe needed");
      assert.equal(probes(), 0);

      lane.breaker.reportUnavailable("ECONNREFUSED");
      assert.equal(await lane.ready(), false, "backing off");
      assert.equal(probes(), 0, "no probe during the back-off");

      nowMs = lane.breaker.blockedUntil;
      assert.deepEqual(await Promise.all([lane.ready(), lane.ready(), lane.ready()]), [true, true, true], "the slots share one probe");
      assert.equal(probes(), 1);
      assert.equal(await lane.ready(), true);
      assert.equal(probes(), 1, "no second probe before the next failure");

      await llm.stop();
      lane.breaker.reportUnavailable("ECONNREFUSED");
      nowMs = lane.breaker.blockedUntil;
      assert.equal(await lane.ready(), false, "the probe fails: still down");
      assert.ok(lane.breaker.isBlocked(), "and the next back-off starts");
      await llm.restart();
      nowMs = lane.breaker.blockedUntil;
      assert.equal(await lane.ready(), true, "back: it rejoins at the first probe that answers");
    } finally {
      await lane.close();
    }
  });
});
