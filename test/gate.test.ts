/**
 * The gate on its own: a real database (for fila_llm_control and the leader
 * lock) and real sessions, with the clock and the breaker set by the test.
 * Each case builds a fresh Gate, so its 1 s cache of the control row is not in the way.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { Pool } from "pg";
import { parseConfig } from "../src/config";
import { Gate } from "../src/gate";
import { OutageBreaker } from "../src/llm/outage_breaker";
import { Session } from "../src/session";
import { createTestDatabase, reset, type TestDatabase } from "./support/db";

const window = parseConfig({ WINDOW_START: "01:00", WINDOW_END: "06:00", WINDOW_TZ: "America/Mexico_City" }).window;
// 03:00 and 12:00 in Mexico City (UTC−6).
const NIGHT = new Date("2026-11-27T09:00:00Z");
const DAY = new Date("2026-11-27T18:00:00Z");

let db: TestDatabase;
let leader: Session;
let follower: Session;
before(async () => {
  db = await createTestDatabase();
  leader = new Session(db.url);
  follower = new Session(db.url);
  await leader.start();
  await follower.start();
  assert.equal(await leader.tryLead(), true, "the first session takes the leader lock");
});
after(async () => {
  await follower.close();
  await leader.close();
  await db.drop();
});
beforeEach(() => reset(db.pool));

function gate(options: { at: Date; session?: Session; breaker?: OutageBreaker }): Gate {
  return new Gate({
    window,
    pool: db.pool,
    session: options.session ?? leader,
    breaker: options.breaker ?? new OutageBreaker(60),
    clock: () => options.at,
    promptJobFlag: "llm",
  });
}

describe("the gate", () => {
  test("inside the window, on the leader, with the LLM up: a prompt may start, and no flag is forbidden", async () => {
    const g = gate({ at: NIGHT });
    assert.equal(await g.mayStartPrompt(), true);
    assert.deepEqual(await g.forbiddenFlags(), []);
  });

  test("outside the window nothing starts: the prompts' flag is forbidden", async () => {
    const g = gate({ at: DAY });
    assert.equal(await g.mayStartPrompt(), false);
    assert.deepEqual(await g.forbiddenFlags(), ["llm"]);
  });

  test("a follower never starts a prompt, even inside the window", async () => {
    assert.equal(await gate({ at: NIGHT, session: follower }).mayStartPrompt(), false);
    assert.equal(follower.isLeader, false);
  });

  test("while the outage breaker backs off nothing starts; afterwards it does", async () => {
    let nowMs = 0;
    const breaker = new OutageBreaker(60, () => nowMs);
    breaker.reportUnavailable("ECONNREFUSED");
    assert.equal(await gate({ at: NIGHT, breaker }).mayStartPrompt(), false);
    nowMs = breaker.blockedUntil;
    assert.equal(await gate({ at: NIGHT, breaker }).mayStartPrompt(), true);
  });

  test("paused: nothing starts inside the window, nor while forced open", async () => {
    await db.pool.query("SELECT fila_llm_pause()");
    assert.equal(await gate({ at: NIGHT }).mayStartPrompt(), false);
    await db.pool.query("SELECT fila_llm_open_now(interval '2 hours')");
    assert.equal(await gate({ at: new Date() }).mayStartPrompt(), false, "a pause wins over open-now");
    await db.pool.query("SELECT fila_llm_resume()");
    assert.equal(await gate({ at: NIGHT }).mayStartPrompt(), true);
  });

  test("open-now opens it outside the window until its end, and only until then", async () => {
    // A one-hour window twelve hours from now, so that the next hours are outside it.
    const h = (new Date().getUTCHours() + 12) % 24;
    const hhmm = (x: number) => `${String(x).padStart(2, "0")}:00`;
    const farWindow = parseConfig({ WINDOW_START: hhmm(h), WINDOW_END: h === 23 ? "24:00" : hhmm(h + 1), WINDOW_TZ: "UTC" }).window;
    const at = (instant: Date) =>
      new Gate({ window: farWindow, pool: db.pool, session: leader, breaker: new OutageBreaker(60), clock: () => instant, promptJobFlag: "llm" });
    const { rows } = await db.pool.query("SELECT fila_llm_open_now(interval '1 hour') AS until");
    const until: Date = rows[0].until;
    assert.equal(await at(new Date(until.getTime() - 30 * 60_000)).mayStartPrompt(), true, "30 min before its end");
    assert.equal(await at(new Date(until.getTime() + 1000)).mayStartPrompt(), false, "1 s after its end");
  });

  test("after beginShutdown nothing starts", async () => {
    const g = gate({ at: NIGHT });
    assert.equal(await g.mayStartPrompt(), true);
    g.beginShutdown();
    assert.equal(await g.mayStartPrompt(), false);
  });

  test("with the control row unreadable (database away) nothing starts", async () => {
    const away = new Pool({ connectionString: "postgres://postgres@127.0.0.1:1/none", connectionTimeoutMillis: 500 });
    try {
      const g = new Gate({ window, pool: away, session: leader, breaker: new OutageBreaker(60), clock: () => NIGHT, promptJobFlag: "llm" });
      assert.equal(await g.mayStartPrompt(), false);
    } finally {
      await away.end();
    }
  });
});
