/**
 * status and the report at scale (docs/architecture.md, "Status at scale"):
 * every read of fila_llm_anahuac goes through an index, the index-friendly
 * bounds on fecha_out lose no run (a daylight-saving night, a run that ended
 * hours after the window), and what is read over many nights or all time is
 * a bounded sample that the screen names.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Pool } from "pg";
import { parseConfig } from "../src/config";
import { lastClosedNight, nightOf } from "../src/ops/nights";
import { readNightSummaryReport } from "../src/ops/report";
import { ESTIMATE_SAMPLE_RUNS, readStatus, renderStatus } from "../src/ops/status";
import { countPending, countPendingUpTo } from "../src/sql/prompts";
import type { Queryable } from "../src/sql/queryable";
import { ERROR_SAMPLE_ROWS, errorGroups, runsIn, runStats } from "../src/sql/reports";
import { databaseBed } from "./support/bed";
import { seedRun } from "./support/ops";

const mexico = parseConfig({ WINDOW_START: "01:00", WINDOW_END: "06:00", WINDOW_TZ: "America/Mexico_City" }).window;
// Night 2026-11-27 in Mexico City is 07:00Z–12:00Z.
const NOW = new Date("2026-11-27T15:00:00Z");

const db = databaseBed();

/** `count` finished rows in one statement, the n-th (from 1) finishing at `firstAt` + n × `everySeconds`, taking `seconds(n)`. */
async function seedFinished(count: number, estatus: "listo" | "error", firstAt: string, everySeconds: number, seconds: string): Promise<void> {
  await db.pool.query(
    `INSERT INTO fila_llm_anahuac (prompt, estatus, fecha_out, tiempo_ejecucion)
     SELECT 'seeded ' || n, $2, ($3::timestamptz + n * make_interval(secs => $4))::timestamp, ${seconds}
       FROM generate_series(1, $1::int) AS n
      ORDER BY n`,
    [count, estatus, firstAt, everySeconds],
  );
}

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Index Cond"?: string;
  Plans?: PlanNode[];
}

/**
 * What is wrong with a plan's reads of fila_llm_anahuac, if anything: a
 * sequential scan, or an index read without bounds. The head of the pendiente
 * and error indexes is read in order under a LIMIT, so those need no bound.
 */
function unboundedReads(node: PlanNode, parent: PlanNode | null = null, found: string[] = []): string[] {
  const onLegacyTable = node["Relation Name"] === "fila_llm_anahuac" || (node["Node Type"] === "Bitmap Index Scan" && parent?.["Relation Name"] === "fila_llm_anahuac");
  if (onLegacyTable) {
    if (node["Node Type"] === "Seq Scan") found.push("a sequential scan");
    if (node["Index Name"] !== undefined && node["Index Cond"] === undefined
        && !["fila_llm_anahuac_pendiente_idx", "fila_llm_anahuac_error_idx"].includes(node["Index Name"])) {
      found.push(`${node["Index Name"]} read whole`);
    }
  }
  for (const child of node.Plans ?? []) unboundedReads(child, node, found);
  return found;
}

describe("status and the report at scale", () => {
  test("every query of status, the report and window_gate's counts reads fila_llm_anahuac through an index, with bounds", async () => {
    await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-27T08:00:00Z", seconds: 10 });
    await seedRun(db.pool, { estatus: "error", finishedAt: "2026-11-27T09:00:00Z", seconds: 1, message: "HTTP 500" });
    await seedRun(db.pool, { estatus: "pendiente" });
    const client = await db.pool.connect();
    try {
      const queries: { text: string; values?: unknown[] }[] = [];
      const recording: Queryable = {
        query: (text: string, values?: unknown[]) => {
          queries.push({ text, values });
          return client.query(text, values);
        },
      };
      await readStatus(recording, mexico, NOW);
      await readNightSummaryReport(recording, lastClosedNight(NOW, mexico), mexico);
      await runsIn(recording, lastClosedNight(NOW, mexico));
      await countPending(recording);
      await countPendingUpTo(recording, 3);
      assert.ok(queries.filter((q) => q.text.includes("fila_llm_anahuac")).length >= 8, `${queries.length} queries`);
      // With sequential scans priced out, a query that has no index path still gets one, and shows it.
      await client.query("SET enable_seqscan = off");
      for (const q of queries) {
        if (!q.text.includes("fila_llm_anahuac")) continue;
        const { rows } = await client.query(`EXPLAIN (FORMAT JSON) ${q.text}`, q.values);
        const problems = unboundedReads(rows[0]["QUERY PLAN"][0].Plan);
        assert.deepEqual(problems, [], q.text);
      }
    } finally {
      await client.query("RESET enable_seqscan");
      client.release();
    }
  });

  test("on the night daylight saving ends, a run finished in the repeated hour counts, as it did before the index", async () => {
    // 01:30–06:00 in New York on 2026-11-01 opens at 01:30 EDT (05:30Z). fecha_out
    // '01:10' written in that zone reads as 01:10 EST (06:10Z): after the opening,
    // though its wall-clock time is before the opening's.
    const newYork = parseConfig({ WINDOW_START: "01:30", WINDOW_END: "06:00", WINDOW_TZ: "America/New_York" }).window;
    const night = nightOf("2026-11-01", newYork);
    assert.equal(night.opensAt.toISOString(), "2026-11-01T05:30:00.000Z");
    const local = new Pool({ connectionString: db.url, max: 1, options: "-c TimeZone=America/New_York" });
    try {
      await local.query(
        `INSERT INTO fila_llm_anahuac (prompt, estatus, fecha_out, tiempo_ejecucion) VALUES
           ('en la hora repetida', 'listo', '2026-11-01 01:10', 5),
           ('antes de abrir', 'error', '2026-11-01 00:50', 5)`,
      );
      const stats = await runStats(local, [night]);
      assert.deepEqual([stats.listo, stats.errors], [1, 0]);
      assert.deepEqual((await runsIn(local, night)).map((r) => r.finishedAt.toISOString()), ["2026-11-01T06:10:00.000Z"]);
      assert.deepEqual(await errorGroups(local, [night]), []);
    } finally {
      await local.end();
    }
  });

  test("a run that ended hours after the window closed, having started inside it, belongs to that night", async () => {
    // Started 05:00 local (11:00Z), ran 9 hours: it ended at 14:00 local (20:00Z).
    await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-27T20:00:00Z", seconds: 9 * 3600, tokensOut: 10 });
    // Ended at the same time after 100 s: a daytime run, in no night.
    await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-27T20:00:00Z", seconds: 100 });
    const night = nightOf("2026-11-27", mexico);
    const stats = await runStats(db.pool, [night]);
    assert.equal(stats.listo, 1);
    assert.equal(stats.maxSeconds, 9 * 3600);
    assert.equal((await readStatus(db.pool, mexico, new Date("2026-11-28T00:00:00Z"))).lastNight.overrunSeconds, 8 * 3600);
    // Deleting the long run leaves the bound where it was: still a superset, and still exact.
    await db.pool.query("DELETE FROM fila_llm_anahuac WHERE tiempo_ejecucion > 3600");
    assert.equal((await runStats(db.pool, [night])).listo, 0);
  });

  test("tonight's estimate uses the most recent 5,000 'listo' runs of the last 7 nights, and says so", async () => {
    // Night 2026-11-26: 6,000 runs, one every 2 s from 01:00 local (07:00Z); the
    // oldest 3,000 took 100 s, the newest 3,000 took 1 s. The median of all is
    // 50.5 s; of the most recent 5,000 (2,000 of 100 s, 3,000 of 1 s), 1 s.
    await seedFinished(6000, "listo", "2026-11-26T07:00:00Z", 2, "CASE WHEN n <= 3000 THEN 100 ELSE 1 END");
    const s = await readStatus(db.pool, mexico, NOW);
    assert.equal(s.tonight.runsUsed, ESTIMATE_SAMPLE_RUNS);
    assert.equal(s.tonight.runsSampled, true);
    assert.equal(s.tonight.medianSeconds, 1, "the median of the 5,000 most recent, not of all 6,000");
    await seedRun(db.pool, { estatus: "pendiente" });
    assert.match(renderStatus(await readStatus(db.pool, mexico, NOW)), /1 pendiente × median 1\.0 s \(the last 5,000 'listo' runs of the last 7 nights\) ≈ 1 s/);
  });

  test("status groups the 10,000 errors that failed last, and says how many there are in all", async () => {
    // 10,050 errors, one a second; the oldest 50 with a message of their own.
    await seedFinished(ERROR_SAMPLE_ROWS + 50, "error", "2026-11-20T07:00:00Z", 1, "1");
    await db.pool.query(
      `INSERT INTO fila_llm_outcome (prompt_id, estatus, error_message)
       SELECT id, 'error', CASE WHEN row_number() OVER (ORDER BY fecha_out) <= 50 THEN 'the oldest' ELSE 'HTTP 500' END
         FROM fila_llm_anahuac`,
    );
    const s = await readStatus(db.pool, mexico, NOW);
    assert.deepEqual(s.errorsSampledOf, { rows: ERROR_SAMPLE_ROWS, total: ERROR_SAMPLE_ROWS + 50 });
    assert.deepEqual(s.errors.map((g) => [g.message, g.count]), [["HTTP 500", ERROR_SAMPLE_ROWS]]);
    assert.match(renderStatus(s), /^Errors +the 10,000 that failed last of 10,050 rows in error, by message:\n +10,000 × "HTTP 500"/m);
    // A night's errors are all of that night's, however many.
    const report = await readNightSummaryReport(db.pool, nightOf("2026-11-20", mexico), mexico);
    assert.deepEqual(report.errors.map((g) => [g.message, g.count]), [["HTTP 500", ERROR_SAMPLE_ROWS], ["the oldest", 50]]);
  });
});
