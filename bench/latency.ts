/**
 * Latency, three ways:
 * - insert → LLM request, with the window open and the worker idle (it learns of the job by
 *   graphile-worker's NOTIFY);
 * - window opening → first LLM request, with a prompt already waiting (the worker runs in this
 *   process with a clock that crosses WINDOW_START a moment after it is ready);
 * - worker start → ready: spawning `node dist/src/cli.js start` to its "worker ready" line,
 *   which includes loading the token encoder.
 * Every worker uses the production poll interval (WORKER_POLL_INTERVAL_MS default).
 */
import { randomInt } from "node:crypto";
import { parseConfig } from "../src/config";
import { startWorker } from "../src/worker";
import { createTestDatabase, type TestDatabase } from "../test/support/db";
import type { FakeLlm } from "../test/support/llm_server";
import { MovableClock, startChildWorker } from "../test/support/worker";
import type { Check } from "./checks";
import { fmt, hrNow, startInstantLlm, waitUntil, workerEnv } from "./support";
import { median, printTable } from "./table";

const INSERT_SAMPLES = 20;
const WINDOW_SAMPLES = 5;
const START_SAMPLES = 5;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Inserts one prompt; resolves with its text, for finding its request at the LLM. */
async function insertOne(db: TestDatabase, label: string): Promise<string> {
  const prompt = `Explica en un párrafo la fotosíntesis, ${label} ${randomInt(1e9)}`;
  await db.pool.query("INSERT INTO fila_llm_anahuac (prompt) VALUES ($1)", [prompt]);
  return prompt;
}

/** Waits for the prompt's request to be answered; returns when it started (hi-res ms). */
async function requestStart(llm: FakeLlm, prompt: string, timeoutMs: number): Promise<number> {
  await waitUntil(() => llm.requests.some((r) => r.prompt === prompt && r.endedAtHr !== null), timeoutMs, `the request for "${prompt}"`, 5);
  return llm.requests.find((r) => r.prompt === prompt)!.startedAtHr;
}

async function insertToRequest(llm: FakeLlm, db: TestDatabase): Promise<number[]> {
  const worker = startChildWorker(workerEnv(db.url, llm));
  try {
    await worker.waitFor(/worker ready/);
    const latencies: number[] = [];
    for (let i = 0; i < INSERT_SAMPLES; i++) {
      // Idle first, so the worker is waiting for a NOTIFY, not finishing the previous job.
      await sleep(100 + randomInt(100));
      const started = hrNow();
      const prompt = await insertOne(db, `insert ${i}`);
      latencies.push((await requestStart(llm, prompt, 10_000)) - started);
    }
    return latencies;
  } finally {
    await worker.stop();
  }
}

/** Silences this process's stdout and stderr while `body` runs (the in-process worker logs there). */
async function quietly<T>(body: () => Promise<T>): Promise<T> {
  const out = process.stdout.write;
  const err = process.stderr.write;
  process.stdout.write = (() => true) as typeof out;
  process.stderr.write = (() => true) as typeof err;
  try {
    return await body();
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

async function windowToRequest(llm: FakeLlm, db: TestDatabase): Promise<number[]> {
  // The window is 01:00–02:00 UTC on the worker's clock, which starts at 00:30 (closed).
  const config = parseConfig(workerEnv(db.url, llm, { WINDOW_START: "01:00", WINDOW_END: "02:00" }));
  const today = new Date();
  const opensAtMs = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate(), 1, 0, 0);
  const latencies: number[] = [];
  for (let i = 0; i < WINDOW_SAMPLES; i++) {
    const clock = new MovableClock();
    clock.set(new Date(opensAtMs - 30 * 60_000));
    const prompt = await insertOne(db, `window ${i}`);
    const worker = await quietly(() => startWorker(config, db.pool, db.url, { clock: clock.now }));
    try {
      // Let it settle into its closed-window polling, then open the window a random moment later.
      await sleep(300);
      const leadMs = 500 + randomInt(1000);
      const opensAtHr = hrNow() + leadMs;
      clock.set(new Date(opensAtMs - leadMs));
      latencies.push((await quietly(() => requestStart(llm, prompt, 10_000))) - opensAtHr);
    } finally {
      await quietly(() => worker.stop());
    }
  }
  return latencies;
}

async function startToReady(llm: FakeLlm, db: TestDatabase): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < START_SAMPLES; i++) {
    const started = hrNow();
    const worker = startChildWorker(workerEnv(db.url, llm));
    try {
      await worker.waitFor(/worker ready/);
      times.push(hrNow() - started);
    } finally {
      await worker.stop();
    }
  }
  return times;
}

/** Measures the three latencies and prints their table; returns the targets' checks. */
export async function benchLatency(): Promise<Check[]> {
  const llm = await startInstantLlm();
  const db = await createTestDatabase();
  let insert: number[], window: number[], start: number[];
  try {
    insert = await insertToRequest(llm, db);
    window = await windowToRequest(llm, db);
    start = await startToReady(llm, db);
  } finally {
    await db.drop();
    await llm.stop();
  }
  const row = (name: string, xs: number[]) => [name, xs.length, fmt(median(xs), 1), fmt(Math.min(...xs), 1), fmt(Math.max(...xs), 1)];
  printTable(
    "Latency (ms)",
    ["what", "samples", "median", "min", "max"],
    [
      row("insert → LLM request, window open, worker idle", insert),
      row("window opening → first LLM request", window),
      row("worker start → ready (spawn to \"worker ready\")", start),
    ],
  );
  return [
    { target: "insert → request ≤ 100 ms (window open)", measured: `median ${fmt(median(insert))} ms, max ${fmt(Math.max(...insert))} ms`, met: Math.max(...insert) <= 100 },
    { target: "window opening → first request ≤ 2 s", measured: `median ${fmt(median(window))} ms, max ${fmt(Math.max(...window))} ms`, met: Math.max(...window) <= 2000 },
    { target: "worker start → ready ≤ 2 s", measured: `median ${fmt(median(start))} ms, max ${fmt(Math.max(...start))} ms`, met: Math.max(...start) <= 2000 },
  ];
}
