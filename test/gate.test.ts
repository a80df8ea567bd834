/**
 * The gate on its own: a real database (for fila_llm_control and the lane
 * locks) and real sessions, with the clock and the lane's readiness set by
 * the test. Each case builds a fresh Gate, so its 1 s cache of the control row
 * is not in the way.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { Pool } from "pg";
import { parseConfig } from "../src/config";
import { Gate, type LaneGate } from "../src/gate";
import { OutageBreaker } from "../src/llm/outage_breaker";
import { Session } from "../src/session";
import { createTestDatabase, reset, type TestDatabase } from "./support/db";

const window = parseConfig({ WINDOW_START: "01:00", WINDOW_END: "06:00", WINDOW_TZ: "America/Mexico_City" }).window;
// 03:00 and 12:00 in Mexico City (UTC−6).
const NIGHT = new Date("2026-11-27T09:00:00Z");
const DAY = new Date("2026-11-27T18:00:00Z");
const SERVER = "http://gpu1:11434/";

/** A lane whose readiness is its breaker's: not while it backs off. */
function lane(breaker = new OutageBreaker(60), server = SERVER): LaneGate {
  return { server, ready: async () => !breaker.isBlocked() };
}

let db: TestDatabase;
let leader: Session;
let follower: Session;
before(async () => {
  db = await createTestDatabase();
  leader = new Session(db.url);
  follower = new Session(db.url);
  await leader.start();
  await follower.start();
  assert.equal(await leader.tryTakeLane(SERVER), true, "the first session takes the lane's lock");
});
after(async () => {
  await follower.close();
  await leader.close();
  await db.drop();
});
beforeEach(() => reset(db.pool));

function gate(options: { at: Date; session?: Session; pool?: Pool; window?: typeof window }): Gate {
  return new Gate({
    window: options.window ?? window,
    pool: options.pool ?? db.pool,
    session: options.session ?? leader,
    clock: () => options.at,
    promptJobFlag: "llm",
    recheckMs: 50,
  });
}

describe("the gate", () => {
  test("inside the window, on the lane's holder, with its LLM up: a prompt may start, and the fetch is let through with no flag forbidden", async () => {
    const g = gate({ at: NIGHT });
    assert.equal(await g.mayStartPrompt(lane()), true);
    assert.deepEqual(await g.forbiddenFlagsFor(lane())(), []);
  });

  test("outside the window nothing starts: the fetch is held back (graphile-worker is not asked for a job) until the gate opens, and at shutdown it goes with the prompts' flag forbidden", async () => {
    const g = gate({ at: DAY });
    assert.equal(await g.mayStartPrompt(lane()), false);
    let answered: string[] | null = null;
    const fetch = g.forbiddenFlagsFor(lane())().then((flags) => (answered = flags));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(answered, null, "still waiting after 300 ms");
    g.beginShutdown();
    await fetch;
    assert.deepEqual(answered, ["llm"]);
  });

  test("a process that does not hold the lane never starts its prompts, even inside the window; another lane is free for it", async () => {
    assert.equal(await gate({ at: NIGHT, session: follower }).mayStartPrompt(lane()), false);
    assert.equal(follower.holds(SERVER), false);
    const other = "http://gpu2:11434/";
    assert.equal(await gate({ at: NIGHT, session: follower }).mayStartPrompt(lane(undefined, other)), true);
    assert.equal(follower.holds(other), true);
    assert.equal(await gate({ at: NIGHT }).mayStartPrompt(lane(undefined, other)), false, "and then not for the first process");
  });

  test("while the lane's outage breaker backs off nothing starts; afterwards it does, and a waiting fetch is let through", async () => {
    let nowMs = 0;
    const breaker = new OutageBreaker(60, () => nowMs);
    breaker.reportUnavailable("ECONNREFUSED");
    assert.equal(await gate({ at: NIGHT }).mayStartPrompt(lane(breaker)), false);
    const fetch = gate({ at: NIGHT }).forbiddenFlagsFor(lane(breaker))();
    nowMs = breaker.blockedUntil;
    assert.deepEqual(await fetch, []);
    assert.equal(await gate({ at: NIGHT }).mayStartPrompt(lane(breaker)), true);
  });

  test("paused: nothing starts inside the window, nor while forced open", async () => {
    await db.pool.query("SELECT fila_llm_pause()");
    assert.equal(await gate({ at: NIGHT }).mayStartPrompt(lane()), false);
    await db.pool.query("SELECT fila_llm_open_now(interval '2 hours')");
    assert.equal(await gate({ at: new Date() }).mayStartPrompt(lane()), false, "a pause wins over open-now");
    await db.pool.query("SELECT fila_llm_resume()");
    assert.equal(await gate({ at: NIGHT }).mayStartPrompt(lane()), true);
  });

  test("open-now opens it outside the window until its end, and only until then", async () => {
    // A one-hour window twelve hours from now, so that the next hours are outside it.
    const h = (new Date().getUTCHours() + 12) % 24;
    const hhmm = (x: number) => `${String(x).padStart(2, "0")}:00`;
    const farWindow = parseConfig({ WINDOW_START: hhmm(h), WINDOW_END: h === 23 ? "24:00" : hhmm(h + 1), WINDOW_TZ: "UTC" }).window;
    const at = (instant: Date) => gate({ at: instant, window: farWindow });
    const { rows } = await db.pool.query("SELECT fila_llm_open_now(interval '1 hour') AS until");
    const until: Date = rows[0].until;
    assert.equal(await at(new Date(until.getTime() - 30 * 60_000)).mayStartPrompt(lane()), true, "30 min before its end");
    assert.equal(await at(new Date(until.getTime() + 1000)).mayStartPrompt(lane()), false, "1 s after its end");
  });

  test("after beginShutdown nothing starts", async () => {
    const g = gate({ at: NIGHT });
    assert.equal(await g.mayStartPrompt(lane()), true);
    g.beginShutdown();
    assert.equal(await g.mayStartPrompt(lane()), false);
  });

  test("with the control row unreadable (database away) nothing starts", async () => {
    const away = new Pool({ connectionString: "postgres://postgres@127.0.0.1:1/none", connectionTimeoutMillis: 500 });
    try {
      assert.equal(await gate({ at: NIGHT, pool: away }).mayStartPrompt(lane()), false);
    } finally {
      await away.end();
    }
  });
});
