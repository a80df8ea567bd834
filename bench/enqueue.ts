/**
 * Enqueue: one INSERT of 100,000 rows, with the enqueue trigger and without it. Each run starts
 * on a freshly migrated database (a new empty database migrated from scratch, so _private_jobs
 * has no statistics yet: the case that made a row-level trigger quadratic), then repeats the
 * INSERT on the same database once its first 100,000 rows (and jobs) are there and analysed.
 */
import { createTestDatabase } from "../test/support/db";
import { migrate } from "../src/migrate";
import { enqueueRange } from "../src/sql/jobs";
import { BATCH_ROWS } from "../tasks/enqueue_prompts";
import type { Check } from "./checks";
import { fmt, hrNow } from "./support";
import { median, printTable } from "./table";

export interface EnqueueOptions {
  rows: number;
  runs: number;
}

/**
 * Seconds for the first and the second INSERT … SELECT FROM generate_series on a fresh database,
 * and (with the trigger) for adding their jobs afterwards, as the enqueue_prompts task does.
 */
async function timeInserts(rows: number, trigger: boolean): Promise<[number, number, number]> {
  const db = await createTestDatabase({ migrated: false });
  try {
    await migrate(db.pool);
    if (!trigger) await db.pool.query("ALTER TABLE fila_llm_anahuac DISABLE TRIGGER fila_llm_enqueue_inserted");
    const insert = async (): Promise<number> => {
      const started = hrNow();
      await db.pool.query(
        `INSERT INTO fila_llm_anahuac (prompt)
         SELECT 'Explica en un párrafo la fotosíntesis, caso ' || g FROM generate_series(1, $1::int) AS g`,
        [rows],
      );
      return (hrNow() - started) / 1000;
    };
    const fresh = await insert();
    await db.pool.query("ANALYZE");
    const second = await insert();
    // Bulk statements leave an enqueue_prompts job each; add their jobs the way that task does.
    const feedStarted = hrNow();
    const { rows: feed } = await db.pool.query(
      `SELECT j.id, j.payload FROM fila_llm_housekeeping._private_jobs j JOIN fila_llm_housekeeping._private_tasks t ON t.id = j.task_id
        WHERE t.identifier = 'enqueue_prompts' ORDER BY j.run_at`,
    );
    for (const { from, to, at } of feed.flatMap((job) => job.payload)) {
      for (let next: number | null = from; next !== null && next <= to; ) {
        const last: number | null = await enqueueRange(db.pool, next, to, at, BATCH_ROWS);
        next = last === null ? null : last + 1;
      }
    }
    const feedSeconds = (hrNow() - feedStarted) / 1000;
    await db.pool.query("DELETE FROM fila_llm_housekeeping._private_jobs WHERE id = ANY($1::bigint[])", [feed.map((job) => job.id)]);
    const { rows: jobs } = await db.pool.query("SELECT count(*)::int AS n FROM graphile_worker._private_jobs");
    if (jobs[0].n !== (trigger ? 2 * rows : 0)) throw new Error(`bench: expected ${trigger ? 2 * rows : 0} jobs, found ${jobs[0].n}`);
    return [fresh, second, feedSeconds];
  } finally {
    await db.drop();
  }
}

/** Alternates runs with and without the trigger and prints the medians and their ratios. */
export async function benchEnqueue(options: EnqueueOptions): Promise<Check[]> {
  const withTrigger: [number, number, number][] = [];
  const without: [number, number, number][] = [];
  for (let i = 0; i < options.runs; i++) {
    without.push(await timeInserts(options.rows, false));
    withTrigger.push(await timeInserts(options.rows, true));
  }
  const med = (runs: [number, number, number][], which: 0 | 1 | 2) => median(runs.map((r) => r[which]));
  const row = (name: string, runs: [number, number, number][], which: 0 | 1 | 2) => [
    name, fmt(med(runs, which), 3), runs.map((r) => fmt(r[which], 3)).join(", "), fmt(options.rows / med(runs, which), 0),
  ];
  const ratio = (which: 0 | 1) => med(withTrigger, which) / med(without, which);
  printTable(
    `Enqueue: one INSERT of ${options.rows.toLocaleString("en-US")} rows (median of ${options.runs} databases)`,
    ["database", "what", "median s", "runs s", "rows/s"],
    [
      ["freshly migrated", ...row("with the enqueue trigger", withTrigger, 0)],
      ["freshly migrated", ...row("trigger disabled", without, 0)],
      ["freshly migrated", "ratio with / without", fmt(ratio(0), 2) + "×", "", ""],
      [`${options.rows.toLocaleString("en-US")} rows in, analysed`, ...row("with the enqueue trigger", withTrigger, 1)],
      [`${options.rows.toLocaleString("en-US")} rows in, analysed`, ...row("trigger disabled", without, 1)],
      [`${options.rows.toLocaleString("en-US")} rows in, analysed`, "ratio with / without", fmt(ratio(1), 2) + "×", "", ""],
      ["afterwards, in the worker", ...row("enqueue_prompts adds both INSERTs' jobs", withTrigger, 2).map((c, i) => (i === 3 ? fmt((2 * options.rows) / med(withTrigger, 2), 0) : c))],
    ],
  );
  const measured = (which: 0 | 1) => `${fmt(ratio(which), 2)}× (${fmt(med(withTrigger, which), 2)} s / ${fmt(med(without, which), 2)} s)`;
  return [
    { target: "100,000-row INSERT with the trigger ≤ 3× without, fresh database", measured: measured(0), met: ratio(0) <= 3 },
    { target: "100,000-row INSERT with the trigger ≤ 3× without, second batch", measured: measured(1), met: ratio(1) <= 3 },
  ];
}
