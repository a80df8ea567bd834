/**
 * Scale: what a backlog costs the LLM. For each backlog (rows pendiente, each with its job), a
 * real worker (`node dist/src/cli.js start`, with the real crontab, so window_gate runs every
 * minute) drains from its head against an LLM answering in 50 ms, and we measure at the LLM:
 *
 * - the idle gaps between one answer and the next request (median, p99, max);
 * - the idle per minute above the run's median gap: what periodic work (window_gate, the
 *   reaper, graphile-worker's own sweeps) costs the LLM;
 * - prompts/s, and the worker's RSS;
 * - `fila-llm status` and `fila-llm report`, end to end, each a fresh process, as an operator
 *   types them (the legacy table also holds a night of 100,000 finished rows for the report);
 * - at the largest backlog, one bulk INSERT while the prompts flow: how long until all its jobs
 *   exist, the largest LLM gap meanwhile, and that none of its rows was answered while an older
 *   row still waited.
 *
 * The smallest backlog is the base of the ratios. It is not 0: a queue with nothing pending has
 * no gaps to measure, so it is the few thousand rows that one run drains.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import type { Pool } from "pg";
import { projectRoot } from "../src/paths";
import { enqueueRange } from "../src/sql/jobs";
import { createTestDatabase } from "../test/support/db";
import { FakeLlm, type RecordedRequest } from "../test/support/llm_server";
import type { Check } from "./checks";
import { fmt, hrNow, rssMb, spawnWorker, waitUntil, workerEnv } from "./support";
import { median, percentile, printTable } from "./table";

const run = promisify(execFile);

// The LLM's answer time; the gaps between answers are what the queue adds.
const LLM_MS = 50;
// Requests left out at the start: the model's load, JIT warm-up, connection set-up.
const WARM_UP = 40;
// A night of finished rows for the report to read.
const FINISHED_ROWS = 100_000;
// Rows per job batch when seeding the backlog (as enqueue_prompts adds them, larger batches).
const SEED_BATCH = 100_000;

export interface ScaleOptions {
  /** Backlogs, smallest first; the first is the base of the ratios. */
  levels: number[];
  /** Seconds measured at each backlog; over 60 so that window_gate runs at least once. */
  seconds: number;
  /** Rows of the bulk INSERT made at the largest backlog while the prompts flow. */
  bulkRows: number;
  logDir: string;
}

interface LevelResult {
  backlog: number;
  measured: number;
  perSecond: number;
  gapMedianMs: number;
  gapP99Ms: number;
  gapMaxMs: number;
  /** Idle above the median gap, per minute of the run. */
  excessIdlePerMinuteMs: number;
  statusMs: number;
  reportMs: number;
  rssMb: number;
  bulk: BulkResult | null;
}

interface BulkResult {
  rows: number;
  insertSeconds: number;
  /** From the INSERT's start until its last job exists. */
  enqueuedSeconds: number;
  /** The largest LLM gap while the INSERT statement itself ran, and while its jobs were added afterwards. */
  maxGapDuringInsertMs: number;
  maxGapMs: number;
  /** Bulk rows answered while an older row still waited (must be 0). */
  outOfOrder: number;
}

/** `backlog` pendiente rows with their jobs, and a night of finished rows before them. */
async function seed(pool: Pool, backlog: number): Promise<void> {
  // Yesterday (in the database's TimeZone, as fecha_out is written) is the report's night.
  await pool.query(
    `INSERT INTO fila_llm_anahuac (prompt, respuesta, estatus, fecha_in, fecha_out, tokens_in, tokens_out, tiempo_ejecucion)
     SELECT 'ayer ' || g, 'respuesta ' || g, 'listo', (now() - interval '1 day')::date + interval '1 minute',
            (now() - interval '1 day')::date + make_interval(secs => 60 + g * 0.8), 20, 300, 0.75
       FROM generate_series(1, $1::int) AS g`,
    [FINISHED_ROWS],
  );
  if (backlog > 0) {
    const { rows } = await pool.query(
      `INSERT INTO fila_llm_anahuac (prompt)
       SELECT 'Explica en un párrafo la fotosíntesis, caso ' || g FROM generate_series(1, $1::int) AS g
       RETURNING id`,
      [backlog],
    );
    const fromId = rows[0].id as number;
    const toId = rows[rows.length - 1].id as number;
    // Their jobs, as enqueue_prompts adds them, in larger batches; then its own job is not needed.
    const { rows: at } = await pool.query("SELECT now()::text AS at");
    for (let next: number | null = fromId; next !== null && next <= toId; ) {
      const last: number | null = await enqueueRange(pool, next, toId, at[0].at, SEED_BATCH);
      next = last === null ? null : last + 1;
    }
    await pool.query("DELETE FROM fila_llm_housekeeping._private_jobs");
  }
  // A backlog that has waited has been vacuumed and analysed by autovacuum; left to it now, that
  // work (minutes of one core for a million rows) would land inside the measurement.
  await pool.query("VACUUM ANALYZE");
  // And PostgreSQL has long since written the seeding's WAL to its tables: a checkpoint now, not
  // one that the seeding's gigabyte of WAL would start inside the measurement. (Needs a superuser
  // or pg_checkpoint; without it the measurement may include that checkpoint.)
  await pool.query("CHECKPOINT").catch(() => {});
}

/** Milliseconds for one CLI command, from its start to its exit. */
async function timeCli(databaseUrl: string, args: string[]): Promise<number> {
  const started = hrNow();
  await run(process.execPath, [path.join(projectRoot, "dist", "src", "cli.js"), ...args], {
    cwd: projectRoot,
    env: { PATH: process.env.PATH ?? "", DATABASE_URL: databaseUrl, WINDOW_START: "00:00", WINDOW_END: "24:00", WINDOW_TZ: "UTC", LLM_MODEL: "test-model" },
  });
  return hrNow() - started;
}

/** Gaps between consecutive answers whose start falls in [fromHr, toHr). */
function gapsIn(requests: RecordedRequest[], fromHr: number, toHr: number): number[] {
  const done = requests.filter((r) => r.kind === "generate" && r.endedAtHr !== null);
  const gaps: number[] = [];
  for (let i = 1; i < done.length; i++) {
    if (done[i].startedAtHr >= fromHr && done[i].startedAtHr < toHr) gaps.push(done[i].startedAtHr - done[i - 1].endedAtHr!);
  }
  return gaps;
}

/** The three largest gaps in [fromHr, toHr), each with the wall-clock time it ended. */
function largestGaps(requests: RecordedRequest[], fromHr: number, toHr: number): string {
  const done = requests.filter((r) => r.kind === "generate" && r.endedAtHr !== null && r.startedAtHr >= fromHr && r.startedAtHr < toHr);
  return done
    .slice(1)
    .map((r, i) => ({ gap: r.startedAtHr - done[i].endedAtHr!, at: new Date(r.startedAtMs).toISOString().slice(11, 23) }))
    .sort((a, b) => b.gap - a.gap)
    .slice(0, 3)
    .map((g) => `${fmt(g.gap, 1)} ms at ${g.at}`)
    .join(", ");
}

/** The bulk INSERT during the run: until all its jobs exist, and the LLM's largest gap meanwhile. */
async function bulkInsert(pool: Pool, llm: FakeLlm, rows: number): Promise<BulkResult> {
  const { rows: before } = await pool.query("SELECT max(id) AS id FROM fila_llm_anahuac");
  const startedHr = hrNow();
  await pool.query(
    "INSERT INTO fila_llm_anahuac (prompt) SELECT 'Resume el capítulo ' || g FROM generate_series(1, $1::int) AS g",
    [rows],
  );
  const insertedHr = hrNow();
  const insertSeconds = (insertedHr - startedHr) / 1000;
  await waitUntil(
    async () => !(await pool.query("SELECT fila_llm_bulk_enqueue_pending() AS pending")).rows[0].pending,
    600_000,
    "the bulk INSERT's jobs",
    100,
  );
  const enqueuedHr = hrNow();
  const duringInsert = gapsIn(llm.requests, startedHr, insertedHr);
  const gaps = gapsIn(llm.requests, insertedHr, enqueuedHr);
  // FIFO: a bulk row answered before an older row was answered (or while one still waits).
  const { rows: order } = await pool.query(
    `WITH bulk AS (SELECT min(fecha_out) AS first_out FROM fila_llm_anahuac WHERE id > $1 AND estatus <> 'pendiente')
     SELECT count(*)::int AS n FROM fila_llm_anahuac a, bulk
      WHERE bulk.first_out IS NOT NULL AND a.id <= $1 AND a.fecha_in > (now() - interval '1 hour')
        AND (a.estatus = 'pendiente' OR a.fecha_out > bulk.first_out)`,
    [before[0].id],
  );
  return {
    rows,
    insertSeconds,
    enqueuedSeconds: (enqueuedHr - startedHr) / 1000,
    maxGapDuringInsertMs: duringInsert.length > 0 ? Math.max(...duringInsert) : NaN,
    maxGapMs: gaps.length > 0 ? Math.max(...gaps) : NaN,
    outOfOrder: order[0].n,
  };
}

async function measureLevel(backlog: number, options: ScaleOptions, withBulk: boolean): Promise<LevelResult> {
  const db = await createTestDatabase();
  const llm = await FakeLlm.start();
  // The whole stream written at once after the wait, as the queue section's LLM does: the gap then
  // measures the worker, not this process writing (and the worker reading) tokens one by one.
  llm.behaviour = () => ({ delayMs: LLM_MS, burst: true });
  try {
    const seedStarted = hrNow();
    await seed(db.pool, backlog);
    console.log(`  backlog ${backlog.toLocaleString("en-US")}: seeded in ${fmt((hrNow() - seedStarted) / 1000)} s`);
    const worker = spawnWorker(workerEnv(db.url, llm, { WORKER_POLL_INTERVAL_MS: "1000" }), path.join(options.logDir, `scale-${backlog}.log`));
    try {
      await waitUntil(() => llm.generateRequests.filter((r) => r.endedAtHr !== null).length >= WARM_UP, 60_000, "the warm-up", 50);
      const fromHr = hrNow();
      const toHr = fromHr + options.seconds * 1000;
      await waitUntil(() => hrNow() >= toHr, options.seconds * 1000 + 10_000, "the end of the measurement", 200);
      const rss = rssMb(worker.process.pid!);
      const gaps = gapsIn(llm.requests, fromHr, toHr);
      // Where the largest gaps fell, to line them up with the worker's log (window_gate runs at :00 UTC).
      console.log(`  backlog ${backlog.toLocaleString("en-US")}: largest gaps ${largestGaps(llm.requests, fromHr, toHr)}`);
      // The operators' commands, while the prompts still flow (after the gaps are measured: on
      // two cores, a process starting up takes CPU from the worker).
      const statusMs = median([await timeCli(db.url, ["status"]), await timeCli(db.url, ["status"]), await timeCli(db.url, ["status"])]);
      const reportMs = median([await timeCli(db.url, ["report"]), await timeCli(db.url, ["report"]), await timeCli(db.url, ["report"])]);
      const medianGap = median(gaps);
      const excess = gaps.reduce((sum, g) => sum + Math.max(0, g - medianGap), 0);
      const bulk = withBulk ? await bulkInsert(db.pool, llm, options.bulkRows) : null;
      return {
        backlog,
        measured: gaps.length + 1,
        perSecond: (gaps.length + 1) / options.seconds,
        gapMedianMs: medianGap,
        gapP99Ms: percentile(gaps, 99),
        gapMaxMs: Math.max(...gaps),
        excessIdlePerMinuteMs: excess / (options.seconds / 60),
        statusMs,
        reportMs,
        rssMb: rss,
        bulk,
      };
    } finally {
      await worker.stop();
    }
  } finally {
    await llm.stop();
    await db.drop();
  }
}

/** Runs every backlog one after another and prints the scale tables; returns the targets' checks. */
export async function benchScale(options: ScaleOptions): Promise<Check[]> {
  const results: LevelResult[] = [];
  for (const [i, backlog] of options.levels.entries()) {
    results.push(await measureLevel(backlog, options, i === options.levels.length - 1 && options.bulkRows > 0));
  }
  const base = results[0];
  const ratio = (x: number, b: number) => (b > 0 ? `${fmt(x / b, 2)}×` : "n/a");
  printTable(
    `Scale (LLM answering in ${LLM_MS} ms; ${options.seconds} s at each backlog, window_gate from the real crontab; ratios to the first row)`,
    ["rows pendiente", "prompts/s", "gap median ms", "p99 ms", "max ms", "idle above median, ms/min", "status ms", "report ms", "worker RSS MB", "gap median ×", "prompts/s ×", "status ×"],
    results.map((r) => [
      r.backlog.toLocaleString("en-US"), fmt(r.perSecond), fmt(r.gapMedianMs, 2), fmt(r.gapP99Ms, 2), fmt(r.gapMaxMs, 1),
      fmt(r.excessIdlePerMinuteMs, 0), fmt(r.statusMs, 0), fmt(r.reportMs, 0), fmt(r.rssMb, 0),
      ratio(r.gapMedianMs, base.gapMedianMs), ratio(r.perSecond, base.perSecond), ratio(r.statusMs, base.statusMs),
    ]),
  );
  const last = results[results.length - 1];
  const checks: Check[] = [
    { target: `no LLM gap over 100 ms at ${last.backlog.toLocaleString("en-US")} pending`, measured: `max ${fmt(last.gapMaxMs, 1)} ms`, met: last.gapMaxMs <= 100 },
    {
      target: `median gap at ${last.backlog.toLocaleString("en-US")} pending within 1.5× of ${base.backlog.toLocaleString("en-US")}`,
      measured: ratio(last.gapMedianMs, base.gapMedianMs),
      met: last.gapMedianMs <= 1.5 * base.gapMedianMs,
    },
    { target: "`fila-llm status` under 2 s, end to end", measured: `${fmt(last.statusMs, 0)} ms at ${last.backlog.toLocaleString("en-US")} pending`, met: last.statusMs < 2_000 },
    { target: "`status` and `report` at most 1 s", measured: `${fmt(last.statusMs, 0)} / ${fmt(last.reportMs, 0)} ms`, met: last.statusMs <= 1_000 && last.reportMs <= 1_000 },
  ];
  if (last.bulk) {
    const b = last.bulk;
    printTable(
      `A ${b.rows.toLocaleString("en-US")}-row INSERT while ${last.backlog.toLocaleString("en-US")} rows wait and the prompts flow`,
      ["INSERT s", "all its jobs added after s", "largest LLM gap during the INSERT ms", "largest LLM gap while its jobs are added ms", "its rows answered before an older row"],
      [[fmt(b.insertSeconds, 1), fmt(b.enqueuedSeconds, 1), fmt(b.maxGapDuringInsertMs, 1), fmt(b.maxGapMs, 1), b.outOfOrder]],
    );
    checks.push(
      {
        target: `adding a ${b.rows.toLocaleString("en-US")}-row INSERT's jobs causes no LLM gap over 50 ms`,
        measured: `max ${fmt(b.maxGapMs, 1)} ms (${fmt(b.maxGapDuringInsertMs, 1)} ms during the INSERT statement itself)`,
        met: b.maxGapMs <= 50,
      },
      { target: "none of its rows answered while an older row waits", measured: String(b.outOfOrder), met: b.outOfOrder === 0 },
    );
  }
  return checks;
}
