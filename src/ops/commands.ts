/**
 * The operators' commands of the CLI: status, report, and the steering
 * commands, each of which calls one SQL function of migrations/0007 (the same
 * that SQL users call), so the CLI has no power that SQL lacks.
 */
import { writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import type { Config } from "../config";
import { formatLocal, isDate, parseMoment } from "../local_time";
import { openQueueNow, pauseQueue, readControl, resumeQueue } from "../sql/control";
import { cancelPrompt, promptEstatus, retryErrors, retryPrompt } from "../sql/prompts";
import type { Queryable } from "../sql/queryable";
import { describeWindow, isWindowOpen, nextWindowChange } from "../window";
import { openOpsDatabase } from "./database";
import { lastClosedNight, nightOf } from "./nights";
import { formatDuration, parseDuration } from "./text";
import { llmSlots, readNightReport, readNightSummaryReport, renderReport } from "./report";
import { renderReportHtml } from "./report_html";
import { readStatus, renderStatus } from "./status";

/** Each command's usage lines, as `fila-llm help COMMAND` prints them. */
export const OPS_HELP: Record<string, string> = {
  status: `  status [--json]                          window, queue, last night, tonight, errors`,
  report: `  report [--night YYYY-MM-DD] [--html FILE] [--json]
                                           the report of one night (default: the last one)`,
  retry: `  retry ID...                              put 'error' rows back in the queue
  retry --errors [--since WHEN]            every 'error' row, or those failed since WHEN
                                           (YYYY-MM-DD or "YYYY-MM-DD HH:MM" in WINDOW_TZ, or ISO with offset)`,
  pause: `  pause                                    no prompt starts, even in the window, until resume`,
  resume: `  resume                                   back to the normal schedule (ends pause and open-now)`,
  "open-now": `  open-now [--for DURATION]                run the queue now, e.g. --for 2h, 90m, 1h30m (default 2h)`,
  cancel: `  cancel ID...                             mark 'pendiente' rows 'error' ("cancelled by operator")`,
};

export const OPS_USAGE = `Operators' commands (same .env as the worker):\n${Object.values(OPS_HELP).join("\n")}`;

export const OPS_COMMANDS = Object.keys(OPS_HELP);

/** A mistake in the command line: printed with the usage, exit code 64 (EX_USAGE). */
class UsageError extends Error {}

function ids(positionals: string[]): number[] {
  if (positionals.length === 0) throw new UsageError("give at least one prompt id");
  return positionals.map((p) => {
    if (!/^\d+$/.test(p) || Number(p) <= 0 || Number(p) > 2_147_483_647) throw new UsageError(`not a prompt id: ${JSON.stringify(p)}`);
    return Number(p);
  });
}

function noPositionals(positionals: string[]): void {
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
}

type Print = (line: string) => void;

async function run(command: string, args: string[], config: Config, db: Queryable, print: Print): Promise<number> {
  const zone = config.window.timeZone;
  switch (command) {
    case "status": {
      const { values, positionals } = parseArgs({ args, options: { json: { type: "boolean" } }, allowPositionals: true });
      noPositionals(positionals);
      const status = await readStatus(db, config.window, new Date(), llmSlots(config.llm));
      print(values.json ? JSON.stringify(status, null, 2) : renderStatus(status));
      return 0;
    }
    case "report": {
      const { values, positionals } = parseArgs({
        args,
        options: { night: { type: "string" }, html: { type: "string" }, json: { type: "boolean" } },
        allowPositionals: true,
      });
      noPositionals(positionals);
      if (values.night !== undefined && !isDate(values.night)) throw new UsageError(`--night must be YYYY-MM-DD (got ${JSON.stringify(values.night)})`);
      const night = values.night ? nightOf(values.night, config.window) : lastClosedNight(new Date(), config.window);
      if (!values.json && !values.html) {
        // The text shows the slowest runs only: every run of a busy night is not read.
        print(renderReport(await readNightSummaryReport(db, night, config.window, llmSlots(config.llm))));
        return 0;
      }
      const report = await readNightReport(db, night, config.window, llmSlots(config.llm));
      print(values.json ? JSON.stringify(report, null, 2) : renderReport(report));
      if (values.html) {
        await writeFile(values.html, renderReportHtml(report));
        if (!values.json) print(`\nHTML report written to ${values.html}`);
      }
      return 0;
    }
    case "retry": {
      const { values, positionals } = parseArgs({
        args,
        options: { errors: { type: "boolean" }, since: { type: "string" } },
        allowPositionals: true,
      });
      if (values.errors) {
        noPositionals(positionals);
        const since = values.since === undefined ? null : parseMoment(values.since, zone);
        if (since === null && values.since !== undefined) {
          throw new UsageError(`--since must be YYYY-MM-DD, "YYYY-MM-DD HH:MM" (${zone}) or an ISO instant with offset (got ${JSON.stringify(values.since)})`);
        }
        const n = await retryErrors(db, since);
        print(`${n} prompt(s) in 'error'${since ? ` that failed since ${formatLocal(since, zone)} ${zone}` : ""} are back in the queue`);
        return 0;
      }
      if (values.since !== undefined) throw new UsageError("--since goes with --errors");
      let failed = 0;
      for (const id of ids(positionals)) {
        if (await retryPrompt(db, id)) {
          print(`prompt ${id} is back in the queue (pendiente)`);
        } else {
          failed++;
          const estatus = await promptEstatus(db, id);
          print(estatus === null ? `prompt ${id} not retried: there is no such row` : `prompt ${id} not retried: it is '${estatus}', not 'error'`);
        }
      }
      return failed === 0 ? 0 : 1;
    }
    case "pause":
      noPositionals(args);
      await pauseQueue(db);
      print("paused: no prompt starts, not even inside the window, until `fila-llm resume`; a prompt running now finishes");
      return 0;
    case "resume": {
      noPositionals(args);
      await resumeQueue(db);
      const now = new Date();
      const next = nextWindowChange(now, config.window);
      const when = isWindowOpen(now, config.window)
        ? "the window is open now"
        : next
          ? `the window opens at ${formatLocal(next.at, zone)} ${zone}`
          : "the window is always open";
      print(`resumed: back to the normal schedule (${describeWindow(config.window)}); ${when}`);
      return 0;
    }
    case "open-now": {
      const { values, positionals } = parseArgs({ args, options: { for: { type: "string" } }, allowPositionals: true });
      noPositionals(positionals);
      const seconds = parseDuration(values.for ?? "2h");
      if (seconds === null) throw new UsageError(`--for must be a duration such as 2h, 90m or 1h30m (got ${JSON.stringify(values.for)})`);
      const until = await openQueueNow(db, seconds);
      print(`open until ${formatLocal(until, zone)} ${zone} (${formatDuration(seconds)}): prompts run now, one at a time`);
      if ((await readControl(db)).paused) print("but the queue is PAUSED, and a pause wins: run `fila-llm resume` first, then open-now again");
      return 0;
    }
    case "cancel": {
      let failed = 0;
      for (const id of ids(args)) {
        if (await cancelPrompt(db, id)) {
          print(`prompt ${id} cancelled: estatus 'error' ("cancelled by operator"), its job removed`);
        } else {
          failed++;
          const estatus = await promptEstatus(db, id);
          print(estatus === null ? `prompt ${id} not cancelled: there is no such row` : `prompt ${id} not cancelled: it is '${estatus}', not 'pendiente'`);
        }
      }
      return failed === 0 ? 0 : 1;
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/** Runs one operators' command; resolves with the process exit code. */
export async function runOpsCommand(command: string, args: string[], config: Config, print: Print = console.log): Promise<number> {
  let db;
  try {
    db = await openOpsDatabase(config);
  } catch (error) {
    console.error(`fila-llm ${command}: ${(error as Error).message}`);
    return 1;
  }
  try {
    return await run(command, args, config, db.pool, print);
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`fila-llm ${command}: ${(error as Error).message}\n\n${OPS_USAGE}`);
      return 64;
    }
    // undefined_function: the database predates migrations/0007.
    const hint = (error as { code?: string }).code === "42883" ? "; run `npm run migrate` (or restart the worker) first" : "";
    console.error(`fila-llm ${command}: ${(error as Error).message}${hint}`);
    return 1;
  } finally {
    await db.close();
  }
}
