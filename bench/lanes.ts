/**
 * Lanes: the same queue over 1, 2 and 4 LLM servers (a lane each, one request at a time), and
 * over one server that answers 4 at once (LLM_CONCURRENCY_PER_SERVER=4). Every server answers in
 * 200 ms; two worker processes (`node dist/src/cli.js start`) run against the same database, as
 * a university with two machines would. Measured at the servers, over the same span for each
 * case: prompts/s, each lane's busy fraction, the most requests one server ever had in flight.
 */
import path from "node:path";
import { createTestDatabase } from "../test/support/db";
import { FakeLlm } from "../test/support/llm_server";
import type { Check } from "./checks";
import { fmt, hrNow, insertPrompts, spawnWorker, waitUntil, workerEnv, type Child } from "./support";
import { printTable } from "./table";

// Each server's answer time: a short generation on a real GPU.
const LLM_MS = 200;
const WORKER_PROCESSES = 2;

export interface LanesOptions {
  /** Seconds measured in each case, after the warm-up. */
  seconds: number;
  logDir: string;
}

interface Case {
  name: string;
  servers: number;
  concurrency: number;
}

interface CaseResult extends Case {
  perSecond: number;
  /** Per server: the fraction of the span it was answering. */
  busy: number[];
  maxInFlight: number[];
}

/** The time each server spent answering within [from, to), over the span's length. */
function busyFraction(llm: FakeLlm, fromHr: number, toHr: number, concurrency: number): number {
  let busyMs = 0;
  for (const r of llm.generateRequests) {
    const end = r.endedAtHr ?? toHr;
    busyMs += Math.max(0, Math.min(end, toHr) - Math.max(r.startedAtHr, fromHr));
  }
  // A server with several slots is fully busy when every slot is.
  return busyMs / (toHr - fromHr) / concurrency;
}

async function runCase(c: Case, options: LanesOptions): Promise<CaseResult> {
  const servers = await Promise.all(Array.from({ length: c.servers }, () => FakeLlm.start()));
  for (const s of servers) s.behaviour = () => ({ delayMs: LLM_MS, burst: true });
  const db = await createTestDatabase();
  const workers: Child[] = [];
  try {
    // More than the span can drain, so that no lane ever waits for work.
    const capacity = (c.servers * c.concurrency * 1000) / LLM_MS;
    await insertPrompts(db.pool, Math.ceil(capacity * (options.seconds + 15) * 1.5));
    const env = workerEnv(db.url, servers[0], {
      LLM_BASE_URL: servers.map((s) => s.origin).join(","),
      LLM_CONCURRENCY_PER_SERVER: String(c.concurrency),
    });
    for (let i = 0; i < WORKER_PROCESSES; i++) workers.push(spawnWorker(env, path.join(options.logDir, `lanes-${c.servers}x${c.concurrency}-${i}.log`)));
    const answered = () => servers.reduce((n, s) => n + s.generateRequests.filter((r) => r.endedAtHr !== null).length, 0);
    // Every lane running, and a few rounds more.
    await waitUntil(() => servers.every((s) => s.generateRequests.length >= 3), 30_000, "every lane to answer", 50);
    const fromHr = hrNow();
    const before = answered();
    await new Promise((r) => setTimeout(r, options.seconds * 1000));
    const toHr = hrNow();
    const done = answered() - before;
    return {
      ...c,
      perSecond: done / ((toHr - fromHr) / 1000),
      busy: servers.map((s) => busyFraction(s, fromHr, toHr, c.concurrency)),
      maxInFlight: servers.map((s) => s.maxInFlight),
    };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await db.drop();
    await Promise.all(servers.map((s) => s.stop()));
  }
}

/** Runs the four cases one after another and prints their table; returns the targets' checks. */
export async function benchLanes(options: LanesOptions): Promise<Check[]> {
  const cases: Case[] = [
    { name: "1 lane", servers: 1, concurrency: 1 },
    { name: "2 lanes", servers: 2, concurrency: 1 },
    { name: "4 lanes", servers: 4, concurrency: 1 },
    { name: "1 server, LLM_CONCURRENCY_PER_SERVER=4", servers: 1, concurrency: 4 },
  ];
  const results: CaseResult[] = [];
  for (const c of cases) results.push(await runCase(c, options));
  const one = results[0];
  printTable(
    `Lanes (each server answers in ${LLM_MS} ms; ${WORKER_PROCESSES} worker processes; ${options.seconds} s measured per case)`,
    ["case", "prompts/s", "× one lane", "busy per lane", "most in flight per server"],
    results.map((r) => [
      r.name,
      fmt(r.perSecond, 2),
      `${fmt(r.perSecond / one.perSecond, 2)}×`,
      r.busy.map((b) => `${fmt(b * 100, 1)}%`).join(" "),
      r.maxInFlight.join(" "),
    ]),
  );
  const four = results[2];
  const batched = results[3];
  const singles = results.slice(0, 3);
  return [
    { target: "4 lanes ≥ 3.8× one lane's prompts/s", measured: `${fmt(four.perSecond / one.perSecond, 2)}×`, met: four.perSecond >= 3.8 * one.perSecond },
    {
      target: "no lane ever has 2 requests in flight (two worker processes)",
      measured: `most in flight: ${singles.map((r) => Math.max(...r.maxInFlight)).join(", ")}`,
      met: singles.every((r) => r.maxInFlight.every((n) => n === 1)),
    },
    {
      target: "LLM_CONCURRENCY_PER_SERVER=4: 4 in flight, never more",
      measured: `${batched.maxInFlight[0]} in flight; ${fmt(batched.perSecond / one.perSecond, 2)}× one lane`,
      met: batched.maxInFlight[0] === 4,
    },
  ];
}
