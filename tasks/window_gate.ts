/**
 * window_gate: started every minute by graphile-worker's crontab (UTC). It
 * notes when the window (in WINDOW_TZ) opens or closes and logs it once (with
 * a summary of the night at the close), logs progress every few minutes while
 * it is open, and re-enqueues any 'pendiente' row that has lost its job.
 *
 * It is deliberately not what lets prompts run: with concurrency 1 a gate job
 * can wait behind a 10-minute LLM call, so the decision is made before every
 * fetch by the Gate (src/gate.ts). This task only reports and repairs.
 */
import type { Task } from "graphile-worker";
import { appContext } from "../src/context";
import { logger } from "../src/log";
import { progressLine, summaryLine } from "../src/ops/progress";
import { llmSlots } from "../src/ops/report";
import { isDatabaseUnavailable } from "../src/db";
import { readOpenPeriod, recordWindowState } from "../src/sql/control";
import { enqueueOrphans } from "../src/sql/jobs";
import { compactCounts, countPending } from "../src/sql/prompts";
import { describeWindow } from "../src/window";

declare global {
  namespace GraphileWorker {
    interface Tasks {
      window_gate: Record<string, unknown>;
    }
  }
}

const log = logger("window_gate");

const windowGate: Task<"window_gate"> = async (_payload, helpers) => {
  try {
    await report(helpers.withPgClient);
  } catch (error) {
    // With the database away, graphile-worker could not even record a failure;
    // next minute's run does the same work.
    if (!isDatabaseUnavailable(error)) throw error;
    log.debug("window_gate skipped: database unreachable", { error: (error as Error).message });
  }
};

async function report(withPgClient: Parameters<Task<"window_gate">>[1]["withPgClient"]): Promise<void> {
  const { config, gate } = appContext();
  const open = await gate.isOpen();
  await withPgClient(async (db) => {
    const before = await readOpenPeriod(db);
    if (await recordWindowState(db, open)) {
      const pending = await countPending(db);
      const window = describeWindow(config.window);
      if (open) log.info(`queue opened (${window}): ${pending} prompts pending`, { pending });
      else log.info(`queue closed (${window}): ${pending} prompts wait for the next window`, { pending });
      if (!open && before.open && before.since) {
        const summary = await summaryLine(db, before.since, llmSlots(config.llm));
        log.info(summary.message, summary.fields);
      }
    } else if (open) {
      const progress = await progressLine(db, config.window, llmSlots(config.llm));
      if (progress) log.info(progress.message, progress.fields);
    }
    await compactCounts(db);
    const orphans = await enqueueOrphans(db);
    if (orphans.length > 0) {
      log.warn(`re-enqueued ${orphans.length} pendiente rows that had no live job`, { ids: orphans.slice(0, 20) });
    }
  });
}

export default windowGate;
