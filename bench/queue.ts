/**
 * Queue overhead: how long the LLM sits idle between prompts. Three workers drain the same
 * kind of queue against the same instant LLM, one after another, each on a fresh database:
 *
 * - fila-llm: `node dist/src/cli.js start`, the real worker;
 * - the floor: plain graphile-worker with the same settings (bench/floor_worker.ts), whose task
 *   only calls the LLM; and, below that, one whose task does nothing;
 * - the old design: one process per prompt (bench/legacy_process_per_prompt.ts).
 *
 * Gaps are measured at the LLM server: one answer handed to the socket → the next request's
 * headers in.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { FakeLlm } from "../test/support/llm_server";
import { createTestDatabase, type TestDatabase } from "../test/support/db";
import type { Check } from "./checks";
import { printTable, median, percentile } from "./table";
import {
  completedGenerates,
  drainStats,
  fmt,
  insertPrompts,
  spawnLogged,
  spawnWorker,
  startInstantLlm,
  waitUntil,
  workerEnv,
  type DrainStats,
} from "./support";

// Requests left out of the statistics at the start of a drain: JIT warm-up and connection set-up.
const WARM_UP = 100;
// A drain that has not finished by then is broken, not slow.
const DRAIN_TIMEOUT_MS = 120_000;

export interface QueueOptions {
  prompts: number;
  legacyPrompts: number;
  logDir: string;
}

async function withDatabase<T>(body: (db: TestDatabase) => Promise<T>): Promise<T> {
  const db = await createTestDatabase();
  try {
    return await body(db);
  } finally {
    await db.drop();
  }
}

async function drainOurs(llm: FakeLlm, prompts: number, logDir: string): Promise<DrainStats> {
  return withDatabase(async (db) => {
    await insertPrompts(db.pool, prompts);
    const worker = spawnWorker(workerEnv(db.url, llm), path.join(logDir, "queue-fila-llm.log"));
    try {
      await waitUntil(() => completedGenerates(llm).length >= prompts, DRAIN_TIMEOUT_MS, `${prompts} prompts answered`, 50);
      await waitUntil(
        async () => (await db.pool.query("SELECT count(*)::int AS n FROM fila_llm_anahuac WHERE estatus = 'listo'")).rows[0].n === prompts,
        10_000,
        "every row listo",
      );
    } finally {
      await worker.stop();
    }
    return drainStats(completedGenerates(llm), WARM_UP);
  });
}

async function drainFloor(llm: FakeLlm, mode: "http" | "empty", jobs: number, logDir: string): Promise<{ stats: DrainStats | null; startGaps: number[] }> {
  return withDatabase(async (db) => {
    await insertPrompts(db.pool, jobs);
    const script = path.join(__dirname, "floor_worker.js");
    const worker = spawnLogged(script, [mode, String(jobs)], workerEnv(db.url, llm), path.join(logDir, `queue-floor-${mode}.log`));
    let starts: number[];
    try {
      await waitUntil(() => worker.output().includes('{"starts"'), DRAIN_TIMEOUT_MS, `${jobs} floor jobs`, 50);
      starts = JSON.parse(worker.output().split("\n").find((l) => l.startsWith('{"starts"'))!).starts;
    } finally {
      await worker.stop();
    }
    const steady = starts.slice(WARM_UP);
    const startGaps = steady.slice(1).map((t, i) => t - steady[i]);
    return { stats: mode === "http" ? drainStats(completedGenerates(llm), WARM_UP) : null, startGaps };
  });
}

async function drainLegacy(llm: FakeLlm, prompts: number): Promise<DrainStats> {
  return withDatabase(async (db) => {
    await insertPrompts(db.pool, prompts);
    const script = path.join(__dirname, "legacy_process_per_prompt.js");
    for (let i = 0; i < prompts; i++) {
      const child = spawn(process.execPath, [script], {
        env: { PATH: process.env.PATH ?? "", ...workerEnv(db.url, llm) },
        stdio: ["ignore", "ignore", "inherit"],
      });
      const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
      if (code !== 0) throw new Error(`bench: the legacy process exited with ${code}`);
    }
    return drainStats(completedGenerates(llm), 0);
  });
}

/** Runs the three drains side by side and prints their table; returns the targets' checks. */
export async function benchQueue(options: QueueOptions): Promise<Check[]> {
  const llm = await startInstantLlm();
  try {
    const run = async <T>(body: () => Promise<T>): Promise<T> => {
      llm.requests.length = 0;
      return body();
    };
    const ours = await run(() => drainOurs(llm, options.prompts, options.logDir));
    const floor = await run(() => drainFloor(llm, "http", options.prompts, options.logDir));
    const empty = await run(() => drainFloor(llm, "empty", options.prompts, options.logDir));
    const legacy = await run(() => drainLegacy(llm, options.legacyPrompts));
    const floorStats = floor.stats!;
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const emptyPerSecond = 1000 / mean(empty.startGaps);

    const row = (name: string, total: number, s: DrainStats) => [
      name, total, s.measured, fmt(s.perSecond), fmt(s.gapMedianMs, 2), fmt(s.gapP99Ms, 2), fmt(s.gapMaxMs, 2), fmt(s.gapMeanMs, 2),
    ];
    printTable(
      `Queue overhead (instant LLM, 300-token answers; statistics skip the first ${WARM_UP} requests, except for the old design)`,
      ["worker", "prompts", "measured", "prompts/s", "LLM idle gap median ms", "p99 ms", "max ms", "mean ms"],
      [
        row("fila-llm (node dist/src/cli.js start)", options.prompts, ours),
        row("floor: graphile-worker, task = the LLM call only", options.prompts, floorStats),
        [
          "floor: graphile-worker, empty task (gap = task start to task start)",
          options.prompts, empty.startGaps.length + 1, fmt(emptyPerSecond),
          fmt(median(empty.startGaps), 2), fmt(percentile(empty.startGaps, 99), 2), fmt(Math.max(...empty.startGaps), 2),
          fmt(mean(empty.startGaps), 2),
        ],
        row("old design: one node process per prompt", options.legacyPrompts, legacy),
      ],
    );
    const timeRatio = floorStats.perSecond / ours.perSecond;
    // The empty task makes no LLM request, so it has no idle gap at the LLM server, the measure the
    // issue asks for; it is shown as well, since "no-op" can be read that strictly.
    const emptyRatio = emptyPerSecond / ours.perSecond;
    printTable("Queue overhead ratios", ["comparison", "ratio"], [
      ["time per prompt, fila-llm / floor (LLM call only)", fmt(timeRatio, 2) + "×"],
      ["time per prompt, fila-llm / floor (empty task, no LLM call)", fmt(emptyRatio, 2) + "×"],
      ["time per prompt, floor (LLM call only) / floor (empty task)", fmt(emptyPerSecond / floorStats.perSecond, 2) + "×"],
      ["idle gap median, fila-llm / floor (LLM call only)", fmt(ours.gapMedianMs / floorStats.gapMedianMs, 2) + "×"],
      ["prompts/s, fila-llm / old design", fmt(ours.perSecond / legacy.perSecond, 0) + "×"],
    ]);
    return [
      { target: "LLM idle gap median ≤ 2 ms", measured: `${fmt(ours.gapMedianMs, 3)} ms`, met: ours.gapMedianMs <= 2 },
      { target: "LLM idle gap p99 ≤ 20 ms", measured: `${fmt(ours.gapP99Ms, 3)} ms`, met: ours.gapP99Ms <= 20 },
      { target: "≥ 500 prompts/s with an instant LLM", measured: `${fmt(ours.perSecond)} prompts/s`, met: ours.perSecond >= 500 },
      { target: "within 2× of the graphile-worker floor", measured: `${fmt(timeRatio, 2)}× the floor's time per prompt`, met: timeRatio <= 2 },
      {
        target: "within 2× of the empty-task floor (no LLM call at all)",
        measured: `${fmt(emptyRatio, 2)}× its time per job`,
        met: emptyRatio <= 2,
      },
    ];
  } finally {
    await llm.stop();
  }
}
