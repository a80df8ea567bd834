/**
 * The morning report: what "night YYYY-MM-DD" means (windows that cross
 * midnight, daylight-saving dates), the text and HTML reports on seeded
 * nights, the CLI, and the HTML page in headless Chromium (skipped where it is
 * not installed, except on CI, where that fails).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, beforeEach, describe, test, type TestContext } from "node:test";
import { parseConfig } from "../src/config";
import { parseMoment } from "../src/local_time";
import { currentOrNextNight, lastClosedNight, nightOf } from "../src/ops/nights";
import { parseDuration } from "../src/ops/text";
import { readNightReport, renderReport } from "../src/ops/report";
import { renderReportHtml } from "../src/ops/report_html";
import { isWindowOpen, type WindowSpec } from "../src/window";
import { createTestDatabase, reset, type TestDatabase } from "./support/db";
import { missingDependency } from "./support/missing";
import { cliEnv, runCli, seedRun, seedRuns, type SeededRun } from "./support/ops";

const spec = (start: string, end: string, zone: string): WindowSpec =>
  parseConfig({ WINDOW_START: start, WINDOW_END: end, WINDOW_TZ: zone }).window;
const mexico = spec("01:00", "06:00", "America/Mexico_City");
const CHROMIUM = "/usr/bin/chromium";

describe("night YYYY-MM-DD is the window that opens on that local date", () => {
  test("01:00–06:00 in America/Mexico_City: night 2026-11-27 is 07:00Z to 12:00Z", () => {
    const night = nightOf("2026-11-27", mexico);
    assert.equal(night.opensAt.toISOString(), "2026-11-27T07:00:00.000Z");
    assert.equal(night.closesAt.toISOString(), "2026-11-27T12:00:00.000Z");
  });

  test("a window that crosses midnight closes on the next date", () => {
    const night = nightOf("2026-11-27", spec("22:00", "06:00", "UTC"));
    assert.equal(night.opensAt.toISOString(), "2026-11-27T22:00:00.000Z");
    assert.equal(night.closesAt.toISOString(), "2026-11-28T06:00:00.000Z");
    const w = spec("22:00", "06:00", "UTC");
    assert.equal(lastClosedNight(new Date("2026-11-28T05:59:59Z"), w).date, "2026-11-26");
    assert.equal(lastClosedNight(new Date("2026-11-28T06:00:00Z"), w).date, "2026-11-27");
    assert.equal(currentOrNextNight(new Date("2026-11-28T03:00:00Z"), w).date, "2026-11-27");
  });

  test("on daylight-saving dates the night is 4 h or 6 h long, and its bounds agree with isWindowOpen", () => {
    const ny = spec("01:00", "06:00", "America/New_York");
    const spring = nightOf("2026-03-08", ny);
    assert.equal(spring.opensAt.toISOString(), "2026-03-08T06:00:00.000Z");
    assert.equal(spring.closesAt.toISOString(), "2026-03-08T10:00:00.000Z");
    const autumn = nightOf("2026-11-01", ny);
    assert.equal(autumn.opensAt.toISOString(), "2026-11-01T05:00:00.000Z", "the first 01:00");
    assert.equal(autumn.closesAt.toISOString(), "2026-11-01T11:00:00.000Z");
    // 02:00 does not exist on 2026-03-08 in New York: the window opens when the clock jumps to 03:00.
    assert.equal(nightOf("2026-03-08", spec("02:00", "06:00", "America/New_York")).opensAt.toISOString(), "2026-03-08T07:00:00.000Z");

    const windows = [mexico, ny, spec("02:00", "06:00", "America/New_York"), spec("22:00", "06:00", "Europe/Madrid"), spec("00:00", "24:00", "Asia/Kolkata")];
    for (const w of windows) {
      for (const date of ["2026-03-07", "2026-03-08", "2026-03-28", "2026-03-29", "2026-10-24", "2026-10-25", "2026-10-31", "2026-11-01", "2026-11-27"]) {
        const { opensAt, closesAt } = nightOf(date, w);
        const label = `${JSON.stringify(w)} ${date}`;
        assert.equal(isWindowOpen(opensAt, w), true, `${label}: open at its opening`);
        assert.equal(isWindowOpen(new Date(closesAt.getTime() - 1000), w), true, `${label}: open just before its closing`);
        assert.equal(isWindowOpen(closesAt, w), w.startMinutes === 0 && w.endMinutes === 1440, `${label}: closed at its closing`);
        if (!(w.startMinutes === 0 && w.endMinutes === 1440)) {
          assert.equal(isWindowOpen(new Date(opensAt.getTime() - 1000), w), false, `${label}: closed just before its opening`);
        }
      }
    }
  });

  test("operators' dates and durations: local dates in WINDOW_TZ, ISO instants, 2h / 90m / 1h30m", () => {
    assert.equal(parseMoment("2026-11-27", "America/Mexico_City")!.toISOString(), "2026-11-27T06:00:00.000Z");
    assert.equal(parseMoment("2026-11-27 14:30", "America/Mexico_City")!.toISOString(), "2026-11-27T20:30:00.000Z");
    assert.equal(parseMoment("2026-11-27T14:30:00Z", "America/Mexico_City")!.toISOString(), "2026-11-27T14:30:00.000Z");
    for (const bad of ["ayer", "2026-02-30", "27/11/2026", "2026-11-27 25:00"]) assert.equal(parseMoment(bad, "UTC"), null, bad);
    assert.equal(parseDuration("2h"), 7200);
    assert.equal(parseDuration("90m"), 5400);
    assert.equal(parseDuration("1h30m"), 5400);
    assert.equal(parseDuration("1d"), 86400);
    for (const bad of ["", "0m", "soon", "2 hours", "-1h"]) assert.equal(parseDuration(bad), null, bad);
  });
});

describe("the report of one night", () => {
  let db: TestDatabase;
  let dir: string;
  const ids: Record<string, number> = {};

  before(async () => {
    db = await createTestDatabase();
    dir = mkdtempSync(path.join(os.tmpdir(), "fila-llm-report-"));
  });
  after(async () => {
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await reset(db.pool);
    // Night 2026-11-27 in Mexico City: 07:00Z–12:00Z. Twelve runs of 60–170 s from 01:05 local.
    let t = Date.parse("2026-11-27T07:05:00Z");
    for (let i = 0; i < 12; i++) {
      const seconds = 60 + i * 10;
      t += (seconds + 30) * 1000;
      const estatus = i % 5 === 4 ? "error" : "listo";
      ids[`run${i}`] = await seedRun(db.pool, {
        estatus,
        finishedAt: new Date(t).toISOString(),
        seconds,
        tokensIn: estatus === "listo" ? 20 : undefined,
        tokensOut: estatus === "listo" ? seconds * 5 : undefined,
        message: estatus === "error" ? "HTTP 500 <from> the server" : undefined,
      });
    }
    // Another night's error and a pending row: not in this night's report.
    ids.otherNight = await seedRun(db.pool, { estatus: "error", finishedAt: "2026-11-26T08:00:00Z", seconds: 1, message: "other night" });
    ids.pending = await seedRun(db.pool, { estatus: "pendiente" });
  });

  test("text: the night's counts, times and errors, and its slowest prompts", async () => {
    const report = await readNightReport(db.pool, nightOf("2026-11-27", mexico), mexico);
    assert.equal(report.runs.length, 12);
    assert.equal(report.summary.listo, 10);
    assert.equal(report.summary.errors, 2);
    assert.deepEqual(report.errors, [{ message: "HTTP 500 <from> the server", count: 2, exampleIds: [ids.run4, ids.run9] }]);
    assert.equal(report.pendingNow, 1);
    const text = renderReport(report);
    assert.match(text, /^fila-llm report: night 2026-11-27, 2026-11-27 01:00 – 2026-11-27 06:00 America\/Mexico_City/);
    assert.match(text, /10 listo, 2 error · tokens in 200/);
    assert.match(text, new RegExp(`2 × "HTTP 500 <from> the server"  ids ${ids.run4}, ${ids.run9}`));
    assert.match(text, new RegExp(`Slowest prompts:\\n  ${ids.run11}  listo  170.00 s`));
  });

  test("HTML: a self-contained page with one timeline bar per prompt coloured by outcome, and a histogram", async () => {
    const report = await readNightReport(db.pool, nightOf("2026-11-27", mexico), mexico);
    const html = renderReportHtml(report);
    assert.equal((html.match(/<rect class="run listo"/g) ?? []).length, 10);
    assert.equal((html.match(/<rect class="run error"/g) ?? []).length, 2);
    assert.match(html, /<svg [^>]*id="timeline"/);
    assert.match(html, /<svg [^>]*id="histogram"/);
    assert.match(html, />01:00</, "the time axis is in local time");
    assert.match(html, />06:00</);
    assert.match(html, /HTTP 500 &lt;from&gt; the server/, "messages are escaped");
    assert.doesNotMatch(html, /<script|\ssrc=|\shref=|url\(|@import/, "nothing to fetch at view time");
    const binned = [...html.matchAll(/<rect class="bin \w+"[^>]*><title>[^:]+: (\d+) /g)].reduce((n, m) => n + Number(m[1]), 0);
    assert.equal(binned, 12, "every run is in the histogram");
  });

  test("HTML: the timeline has one row per LLM server, with each prompt's bar in its server's row", async () => {
    await db.pool.query("DELETE FROM fila_llm_anahuac");
    const [gpu1, gpu2] = ["http://gpu1:11434/", "http://gpu2:11434/"];
    // Two servers answering side by side from 01:00 local (07:00Z), 10 minutes a prompt.
    const runs: SeededRun[] = [];
    for (let i = 1; i <= 4; i++) {
      for (const server of [gpu1, gpu2]) {
        runs.push({ estatus: "listo", finishedAt: new Date(Date.parse("2026-11-27T07:00:00Z") + i * 600_000).toISOString(), seconds: 590, server, message: undefined, finishReason: "stop" });
      }
    }
    await seedRuns(db.pool, runs);
    const html = renderReportHtml(await readNightReport(db.pool, nightOf("2026-11-27", mexico), mexico));
    const lanes = [...html.matchAll(/<text class="lane"[^>]*>([^<]+)</g)].map((m) => m[1]);
    assert.deepEqual(lanes, [gpu1, gpu2], "one row per server, named");
    const bars = [...html.matchAll(/<rect class="run listo" data-id="\d+" x="[\d.]+" y="([\d.]+)"[^>]*><title>[^<]* on (http:[^ <]+)/g)];
    assert.equal(bars.length, 8, "one bar per prompt");
    const rowOf = new Map<string, Set<string>>();
    for (const [, y, server] of bars) rowOf.set(server, (rowOf.get(server) ?? new Set()).add(y));
    assert.equal(rowOf.get(gpu1)!.size, 1, "a server answering one at a time has one track");
    assert.equal(rowOf.get(gpu2)!.size, 1);
    assert.notDeepEqual([...rowOf.get(gpu1)!], [...rowOf.get(gpu2)!], "each server has its own row");
  });

  test("a night that crosses midnight takes the runs from both sides of it", async () => {
    const w = spec("22:00", "06:00", "UTC");
    await db.pool.query("DELETE FROM fila_llm_anahuac");
    await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-27T23:00:00Z", seconds: 5 });
    await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-28T02:00:00Z", seconds: 5 });
    await seedRun(db.pool, { estatus: "listo", finishedAt: "2026-11-28T07:00:00Z", seconds: 5 });
    const report = await readNightReport(db.pool, nightOf("2026-11-27", w), w);
    assert.equal(report.summary.listo, 2);
  });

  test("`fila-llm report --night DATE --html FILE` prints the text and writes the page; a bad date is a usage error", async () => {
    const file = path.join(dir, "night.html");
    const env = cliEnv(db.url);
    const r = await runCli(["report", "--night", "2026-11-27", "--html", file], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /night 2026-11-27/);
    assert.match(r.stdout, /HTML report written to/);
    assert.equal((readFileSync(file, "utf8").match(/<rect class="run /g) ?? []).length, 12);
    const json = await runCli(["report", "--night", "2026-11-27", "--json"], env);
    assert.equal(JSON.parse(json.stdout).summary.listo, 10);
    assert.equal((await runCli(["report", "--night", "27-11-2026"], env)).code, 64);
  });

  /** True if Chromium is here; else the test is skipped, or on CI failed, with the reason. */
  function chromiumInstalled(t: TestContext): boolean {
    if (existsSync(CHROMIUM)) return true;
    missingDependency(t, `${CHROMIUM} is not installed (apt-get install chromium); see docs/operations.md for the manual check`);
    return false;
  }

  /** Opens the page in headless Chromium, as root and offline (see docs/operations.md). */
  function chromium(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) =>
      execFile(
        CHROMIUM,
        [
          "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          `--user-data-dir=${mkdtempSync(path.join(dir, "profile-"))}`, "--enable-logging=stderr", "--v=0",
          ...args, `file://${file}`,
        ],
        { timeout: 60_000, maxBuffer: 20 * 1024 * 1024 },
        (error, stdout, stderr) => resolve({ code: error ? 1 : 0, stdout, stderr }),
      ),
    );
  }

  /** The timeline's bars in a DOM that Chromium dumped, by outcome. */
  function timelineBars(dom: string): { listo: number; error: number; all: number } {
    const svg = /<svg [^>]*id="timeline"[\s\S]*?<\/svg>/.exec(dom)?.[0] ?? "";
    const count = (re: RegExp) => (svg.match(re) ?? []).length;
    return { listo: count(/<rect class="run listo"/g), error: count(/<rect class="run error"/g), all: count(/<rect class="run /g) };
  }

  test("the page opens in headless Chromium without errors and its picture is drawn", async (t) => {
    if (!chromiumInstalled(t)) return;
    const file = path.join(dir, "chromium.html");
    const png = path.join(dir, "chromium.png");
    const report = await readNightReport(db.pool, nightOf("2026-11-27", mexico), mexico);
    writeFileSync(file, renderReportHtml(report));
    const dom = await chromium(file, ["--dump-dom"]);
    assert.equal(dom.code, 0, dom.stderr);
    assert.deepEqual(timelineBars(dom.stdout), { listo: 10, error: 2, all: 12 }, "the timeline's bars are in the rendered page");
    assert.doesNotMatch(dom.stderr, /CONSOLE|Uncaught|Failed to load resource/, "no console error, nothing failed to load");
    const shot = await chromium(file, [`--screenshot=${png}`, "--window-size=1200,900"]);
    assert.equal(shot.code, 0, shot.stderr);
    assert.ok(statSync(png).size > 10_000, "a picture, not a blank page");
  });

  test("in headless Chromium, a night of 1,000 prompts with errors and retries has one timeline bar per prompt", async (t) => {
    if (!chromiumInstalled(t)) return;
    await db.pool.query("DELETE FROM fila_llm_anahuac; DELETE FROM fila_llm_outcome");
    // From 01:00:05 local, back to back with a 2 s gap: runs of 4–16 s fill
    // about 3 of the window's 5 hours. Every 40th prompt ends in error after
    // the 5 attempts; every 7th other one was answered on its 2nd or 3rd try.
    const runs: SeededRun[] = [];
    let finishedMs = Date.parse("2026-11-27T07:00:05Z");
    for (let i = 0; i < 1000; i++) {
      const seconds = 4 + ((i * 7) % 13);
      finishedMs += (seconds + 2) * 1000;
      const finishedAt = new Date(finishedMs).toISOString();
      if (i % 40 === 39) {
        runs.push({ estatus: "error", finishedAt, seconds, attempts: 5, message: i % 80 === 79 ? "LLM call timed out after 900 s" : "HTTP 500 from the server" });
      } else {
        runs.push({ estatus: "listo", finishedAt, seconds, tokensIn: 20, tokensOut: seconds * 9, attempts: i % 7 === 3 ? 2 + (i % 2) : 1 });
      }
    }
    await seedRuns(db.pool, runs);
    const { rows } = await db.pool.query(
      `SELECT count(*) FILTER (WHERE estatus = 'error')::int AS errors, count(*) FILTER (WHERE estatus = 'listo' AND attempts > 1)::int AS retried
         FROM fila_llm_outcome`,
    );
    assert.deepEqual(rows[0], { errors: 25, retried: 140 }, "the seeded night has errors and retried prompts");
    const report = await readNightReport(db.pool, nightOf("2026-11-27", mexico), mexico);
    assert.equal(report.runs.length, 1000);

    const file = path.join(dir, "night-1000.html");
    writeFileSync(file, renderReportHtml(report));
    const dom = await chromium(file, ["--dump-dom"]);
    assert.equal(dom.code, 0, dom.stderr);
    assert.deepEqual(timelineBars(dom.stdout), { listo: 975, error: 25, all: 1000 }, "one bar per prompt in the rendered timeline");
    assert.doesNotMatch(dom.stderr, /CONSOLE|Uncaught|Failed to load resource/, "no console error, nothing failed to load");
  });
});
