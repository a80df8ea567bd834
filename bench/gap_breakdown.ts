/**
 * Where the LLM's idle gap goes: drains N prompts through the real worker with bench/gap_probe.ts
 * preloaded, then, for every gap (one answer's end → the next request's start, at the LLM
 * server), sums the time each query, log write and token count spent inside it. Not part of
 * `npm run bench`; a tool for finding what to make faster.
 *
 *   npm run build && node dist/bench/gap_breakdown.js [prompts]
 *
 * GAP_WORKER_CLI=<copy>/dist/src/cli.js runs a patched copy of dist/ instead (with its own
 * dist/bench/gap_probe.js), to measure a change before making it.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createTestDatabase } from "../test/support/db";
import type { Span } from "./gap_probe";
import { completedGenerates, drainStats, fmt, insertPrompts, spawnLogged, startInstantLlm, waitUntil, workerEnv } from "./support";
import { median, percentile, printTable } from "./table";
import { projectRoot } from "../src/paths";

const WARM_UP = 100;

async function main(prompts: number): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "fila-llm-gap-"));
  const probeFile = path.join(dir, "spans.json");
  const llm = await startInstantLlm();
  const db = await createTestDatabase();
  try {
    await insertPrompts(db.pool, prompts);
    const cli = process.env.GAP_WORKER_CLI ?? path.join(projectRoot, "dist", "src", "cli.js");
    const worker = spawnLogged(
      cli,
      ["start"],
      {
        ...workerEnv(db.url, llm),
        // Passed through to try session settings on the worker's connections, e.g. "-c synchronous_commit=off".
        ...(process.env.PGOPTIONS ? { PGOPTIONS: process.env.PGOPTIONS } : {}),
        GAP_PROBE_FILE: probeFile,
        NODE_OPTIONS: `-r ${path.join(path.dirname(cli), "..", "bench", "gap_probe.js")}`,
      },
      path.join(dir, "worker.log"),
    );
    try {
      await waitUntil(() => completedGenerates(llm).length >= prompts, 120_000, `${prompts} prompts`, 50);
    } finally {
      await worker.stop();
    }
    const requests = completedGenerates(llm).slice(WARM_UP);
    const spans: Span[] = JSON.parse(readFileSync(probeFile, "utf8"));
    const stats = drainStats(requests, 0);
    console.log(`${stats.measured} gaps: ${fmt(stats.perSecond)} prompts/s, gap median ${fmt(stats.gapMedianMs, 2)} ms, p99 ${fmt(stats.gapP99Ms, 2)} ms`);

    // Per gap, the time each label spent inside it (spans clipped to the gap).
    const perLabel = new Map<string, number[]>();
    const gaps: number[] = [];
    let first = 0;
    spans.sort((a, b) => a.start - b.start);
    for (let i = 1; i < requests.length; i++) {
      const from = requests[i - 1].endedAtHr!;
      const to = requests[i].startedAtHr;
      gaps.push(to - from);
      const inGap = new Map<string, number>();
      while (first < spans.length && spans[first].start < from - 1_000) first++;
      for (let j = first; j < spans.length && spans[j].start < to; j++) {
        const s = spans[j];
        const overlap = Math.min(s.end || to, to) - Math.max(s.start, from);
        if (overlap > 0) inGap.set(s.label, (inGap.get(s.label) ?? 0) + overlap);
      }
      for (const [label, ms] of inGap) {
        if (!perLabel.has(label)) perLabel.set(label, []);
        perLabel.get(label)!.push(ms);
      }
    }
    const meanPerGap = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / gaps.length;
    printTable(
      `Where the gap goes (${gaps.length} gaps; spans may overlap: completeJob runs beside getJob)`,
      ["span", "in % of gaps", "median ms when present", "p99 ms", "mean ms per gap"],
      [
        ["whole gap", "100", fmt(median(gaps), 3), fmt(percentile(gaps, 99), 3), fmt(meanPerGap(gaps), 3)],
        ...[...perLabel.entries()]
          .sort((a, b) => meanPerGap(b[1]) - meanPerGap(a[1]))
          .map(([label, xs]) => [label, fmt((xs.length / gaps.length) * 100, 0), fmt(median(xs), 3), fmt(percentile(xs, 99), 3), fmt(meanPerGap(xs), 3)]),
      ],
    );

    // One typical gap, event by event.
    const typical = gaps.indexOf([...gaps].sort((a, b) => a - b)[Math.floor(gaps.length / 2)]);
    const from = requests[typical].endedAtHr!;
    const to = requests[typical + 1].startedAtHr;
    printTable(
      `One median gap (${fmt(to - from, 3)} ms), times from the answer's end`,
      ["span", "start ms", "end ms"],
      spans.filter((s) => s.end > from - 0.5 && s.start < to).map((s) => [s.label, fmt(s.start - from, 3), fmt(s.end - from, 3)]),
    );
  } finally {
    await db.drop();
    await llm.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main(Number(process.argv[2] ?? 2_000)).then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
