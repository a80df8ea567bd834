/**
 * Memory: the worker process's RSS while it drains one long queue (`node dist/src/cli.js start`
 * against an instant LLM), read from /proc every SAMPLE_EVERY prompts, at the moment the next
 * request arrives.
 *
 * RSS saws up and down with V8's garbage collections (tens of MB over thousands of prompts), so
 * one reading says little. Growth is judged on the saw's troughs, the memory still in use after
 * a collection: those of the first and second half of the run after a warm-up must match. Peaks
 * only show when V8 chose to collect (they moved by -41 and +10 MB between halves in two runs
 * without a leak), so they are held to the RSS limit alone.
 */
import path from "node:path";
import { createTestDatabase } from "../test/support/db";
import type { Check } from "./checks";
import { fmt, hrNow, insertPrompts, rssMb, spawnWorker, startInstantLlm, waitUntil, workerEnv, ANSWER_300_TOKENS } from "./support";
import { printTable } from "./table";

// Often enough to catch the saw's peaks and troughs; a /proc read costs ~50 µs.
const SAMPLE_EVERY = 250;
// A leak of 1 KB per prompt grows RSS by ~10 MB per 10,000 prompts; this tolerance is well
// below what the default run can show, and the saw's phase moves peaks by a few MB.
const GROWTH_TOLERANCE_MB = 10;
const RSS_LIMIT_MB = 200;

export interface MemoryOptions {
  prompts: number;
  /** A table row every this many prompts. */
  reportEvery: number;
  logDir: string;
}

interface Sample {
  prompts: number;
  rssMb: number;
  atMs: number;
}

/** Drains `prompts` prompts and prints RSS along the way; returns the target's check. */
export async function benchMemory(options: MemoryOptions): Promise<Check[]> {
  const llm = await startInstantLlm();
  const db = await createTestDatabase();
  const samples: Sample[] = [];
  let answered = 0;
  try {
    await insertPrompts(db.pool, options.prompts);
    const worker = spawnWorker(workerEnv(db.url, llm), path.join(options.logDir, "memory-fila-llm.log"));
    llm.behaviour = () => {
      // Request number answered+1 is arriving: `answered` prompts are done.
      if (answered % SAMPLE_EVERY === 0) samples.push({ prompts: answered, rssMb: rssMb(worker.process.pid!), atMs: hrNow() });
      answered++;
      // The server's request log would otherwise grow in this process for the whole run.
      if (llm.requests.length >= 1_000) llm.requests.length = 0;
      return { text: ANSWER_300_TOKENS, burst: true };
    };
    try {
      await waitUntil(() => answered >= options.prompts, options.prompts * 20, `${options.prompts} prompts answered`, 100);
      await waitUntil(
        async () =>
          (await db.pool.query("SELECT count(*)::int AS n FROM fila_llm_anahuac WHERE estatus = 'listo'")).rows[0].n === options.prompts,
        10_000,
        "every row listo",
      );
      samples.push({ prompts: options.prompts, rssMb: rssMb(worker.process.pid!), atMs: hrNow() });
    } finally {
      await worker.stop();
    }
  } finally {
    await db.drop();
    await llm.stop();
  }

  const rows: (string | number)[][] = [[0, fmt(samples[0].rssMb), "", "", ""]];
  for (let end = options.reportEvery; end <= options.prompts; end += options.reportEvery) {
    const interval = samples.filter((s) => s.prompts > end - options.reportEvery && s.prompts <= end);
    const first = samples.find((s) => s.prompts === end - options.reportEvery)!;
    const last = interval[interval.length - 1];
    const rss = interval.map((s) => s.rssMb);
    rows.push([
      end.toLocaleString("en-US"), fmt(last.rssMb), fmt(Math.min(...rss)), fmt(Math.max(...rss)),
      fmt(((last.prompts - first.prompts) / (last.atMs - first.atMs)) * 1000, 0),
    ]);
  }
  printTable(
    `Memory: worker RSS while draining ${options.prompts.toLocaleString("en-US")} prompts (instant LLM; read every ${SAMPLE_EVERY} prompts)`,
    ["prompts done", "RSS MB", "min MB in interval", "max MB in interval", "prompts/s in interval"],
    rows,
  );

  // After a warm-up of a tenth of the run, compare the two halves' peaks and troughs.
  const steady = samples.filter((s) => s.prompts >= options.prompts / 10);
  const half = Math.floor(steady.length / 2);
  const [early, late] = [steady.slice(0, half).map((s) => s.rssMb), steady.slice(half).map((s) => s.rssMb)];
  const peakGrowth = Math.max(...late) - Math.max(...early);
  const troughGrowth = Math.min(...late) - Math.min(...early);
  const max = Math.max(...steady.map((s) => s.rssMb));
  const at = (prompts: number) => samples.find((s) => s.prompts === prompts);
  const at10k = at(10_000);
  const last = samples[samples.length - 1];
  console.log(
    `\nafter warm-up (${(options.prompts / 10).toLocaleString("en-US")} prompts): max ${fmt(max)} MB; ` +
      `second half vs first half: peak ${peakGrowth >= 0 ? "+" : ""}${fmt(peakGrowth)} MB, trough ${troughGrowth >= 0 ? "+" : ""}${fmt(troughGrowth)} MB`,
  );
  return [
    {
      target: `RSS ≤ ${RSS_LIMIT_MB} MB steady, no growth (over ${options.prompts.toLocaleString("en-US")} prompts)`,
      measured:
        `${at10k ? `${fmt(at10k.rssMb)} MB after 10,000, ` : ""}${fmt(last.rssMb)} MB after ${last.prompts.toLocaleString("en-US")}, ` +
        `max ${fmt(max)} MB; 2nd vs 1st half: peak ${fmt(peakGrowth)} MB, trough ${fmt(troughGrowth)} MB`,
      met: max <= RSS_LIMIT_MB && troughGrowth <= GROWTH_TOLERANCE_MB,
    },
  ];
}
