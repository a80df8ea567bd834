#!/usr/bin/env node
/**
 * The command line: `fila-llm [start]` runs the worker (migrating first),
 * `fila-llm migrate` only migrates, and the operators' commands (status,
 * report, retry, pause, resume, open-now, cancel) live in src/ops/commands.ts.
 */
import { ConfigError, loadConfig, type Config } from "./config";
import { EmbeddedPostgresError } from "./embedded_postgres";
import { logger, setLogFormat, setLogLevel } from "./log";
import { OPS_COMMANDS, OPS_USAGE, runOpsCommand } from "./ops/commands";
import { runMigrations, runWorker } from "./start";
import { absorbDatabaseRejection } from "./worker";

const log = logger("fila-llm");

async function main(argv: string[]): Promise<void> {
  const command = argv[0] ?? "start";
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`fila-llm: invalid configuration: ${error.message}`);
      // 78 is EX_CONFIG; ecosystem.config.cjs tells pm2 not to restart-loop on it.
      process.exit(78);
    }
    throw error;
  }
  setLogFormat(config.logFormat);
  setLogLevel(config.logLevel);
  switch (command) {
    case "start":
      return runWorker(config);
    case "migrate":
      return runMigrations(config);
    default:
      if (OPS_COMMANDS.includes(command)) {
        process.exitCode = await runOpsCommand(command, argv.slice(1), config);
        return;
      }
      console.error(`fila-llm: unknown command "${command}". Commands: start, migrate, ${OPS_COMMANDS.join(", ")}\n\n${OPS_USAGE}`);
      process.exit(64);
  }
}

process.on("unhandledRejection", (error) => {
  if (absorbDatabaseRejection(error)) {
    log.warn("the database went away while graphile-worker recorded the end of a job; the job is freed and runs again once the database is back", {
      error: String((error as Error)?.message ?? error),
    });
    return;
  }
  log.error("unexpected error; exiting so that pm2 restarts the worker", { error: String((error as Error)?.stack ?? error) });
  process.exit(1);
});

main(process.argv.slice(2)).catch((error) => {
  // Nothing to debug in fila-llm's code: the line says why and what to do.
  if (error instanceof EmbeddedPostgresError) {
    console.error(`fila-llm: ${error.message}`);
    process.exit(1);
  }
  log.error("fatal", { error: String(error?.stack ?? error) });
  process.exit(1);
});
