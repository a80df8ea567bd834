#!/usr/bin/env node
/**
 * The command line: `fila-llm [start]` runs the worker (migrating first),
 * `fila-llm migrate` only migrates, and the operators' commands (status,
 * report, retry, pause, resume, open-now, cancel) live in src/ops/commands.ts.
 * `fila-llm help [COMMAND]` (or --help, -h) prints the usage.
 */
import { staleBuild } from "./build_stamp";
import { ConfigError, loadConfig, type Config } from "./config";
import { EmbeddedPostgresError } from "./embedded_postgres";
import { logger, setLogFormat, setLogLevel } from "./log";
import { OPS_COMMANDS, OPS_HELP, OPS_USAGE, runOpsCommand } from "./ops/commands";
import { projectRoot } from "./paths";

const log = logger("fila-llm");

const WORKER_HELP: Record<string, string> = {
  start: `  start                                    run the worker in the foreground (the default): migrate, then answer
                                           prompts in the window; SIGTERM or Ctrl-C stops it gracefully`,
  migrate: `  migrate                                  apply the migrations, then exit`,
};
const HELP_HELP = `  help [COMMAND]                           this text, or one command's (also --help, -h)`;

const USAGE = `Usage: fila-llm [COMMAND] [OPTIONS]      (from the project folder: npx fila-llm …)

${Object.values(WORKER_HELP).join("\n")}
${HELP_HELP}

${OPS_USAGE}

Settings come from the environment and .env (see .env.example). Without DATABASE_URL
every command uses the embedded PostgreSQL of \`npm start\`.`;

const COMMANDS = [...Object.keys(WORKER_HELP), ...OPS_COMMANDS];
const isHelp = (arg: string) => arg === "--help" || arg === "-h" || arg === "help";

/** The usage of one command (or of all), for `help`: printed on stdout, exit 0. */
function printHelp(command: string | undefined): void {
  if (command === undefined) {
    console.log(USAGE);
    return;
  }
  if (!COMMANDS.includes(command)) unknownCommand(command);
  console.log(`Usage: fila-llm ${command} …\n\n${WORKER_HELP[command] ?? OPS_HELP[command]}`);
}

function unknownCommand(command: string): never {
  console.error(`fila-llm: unknown command "${command}". Commands: ${COMMANDS.join(", ")}, help\n\n${USAGE}`);
  // 64 is EX_USAGE.
  process.exit(64);
}

// graphile-worker's rejections that `start` can absorb; set once it has loaded the worker.
let absorbDatabaseRejection: (error: unknown) => boolean = () => false;

async function main(argv: string[]): Promise<void> {
  const stale = staleBuild(projectRoot);
  if (stale) {
    console.error(`fila-llm: ${stale}`);
    process.exit(1);
  }
  const command = argv[0] ?? "start";
  if (isHelp(command)) return printHelp(argv.find((arg, i) => i > 0 && !isHelp(arg)));
  if (!COMMANDS.includes(command)) unknownCommand(command);
  if (argv.slice(1).some((arg) => arg === "--help" || arg === "-h")) return printHelp(command);

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
  // start.ts and worker.ts are loaded only here: graphile-worker takes about
  // half a second to load, and the operators' commands should answer at once.
  if (command === "start") {
    const { runWorker } = require("./start") as typeof import("./start");
    absorbDatabaseRejection = (require("./worker") as typeof import("./worker")).absorbDatabaseRejection;
    return runWorker(config);
  }
  if (command === "migrate") return (require("./start") as typeof import("./start")).runMigrations(config);
  process.exitCode = await runOpsCommand(command, argv.slice(1), config);
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
