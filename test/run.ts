/**
 * `npm test`: finds or starts a PostgreSQL, then runs every test file, the
 * fault suite in test/faults/ included, with Node's test runner (whose closing
 * summary CI reads), and exits with its code. `npm run test:quick` runs only
 * the files in test/ (about a minute).
 *
 * A server is found in this order: TEST_DATABASE_URL; the PostgreSQL at
 * 127.0.0.1:5432; else a throwaway embedded PostgreSQL started here, in a
 * temporary folder (src/embedded_postgres.ts), and removed afterwards.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { EmbeddedPostgresError, startEmbeddedPostgres, type EmbeddedPostgres } from "../src/embedded_postgres";
import { answers, LOCAL_SERVER_URL } from "./support/db";

// Not 5432 nor npm start's 54329.
const EMBEDDED_TEST_PORT = 54339;

/** The compiled test files of a folder, in name order. */
function testFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith(".test.js")).sort().map((f) => path.join(dir, f));
}

async function main(): Promise<number> {
  // The fault files (real pm2, kill -9, outages, restarts) go first: they are
  // the longest, and the quick ones then fill the other lane beside them.
  const files = process.argv.slice(2).length > 0
    ? process.argv.slice(2)
    : [...testFiles(path.join(__dirname, "faults")), ...testFiles(__dirname)];
  let embedded: EmbeddedPostgres | null = null;
  let embeddedDir: string | null = null;
  let url = process.env.TEST_DATABASE_URL;
  if (!url) {
    if (await answers(LOCAL_SERVER_URL)) {
      url = LOCAL_SERVER_URL;
    } else {
      embeddedDir = mkdtempSync(path.join(os.tmpdir(), "fila-llm-test-pg-"));
      console.log(`no PostgreSQL at 127.0.0.1:5432: starting an embedded one in ${embeddedDir}`);
      try {
        embedded = await startEmbeddedPostgres(embeddedDir, EMBEDDED_TEST_PORT);
      } catch (error) {
        rmSync(embeddedDir, { recursive: true, force: true });
        if (!(error instanceof EmbeddedPostgresError)) throw error;
        const fix = error.fix ? `${error.fix}, ` : "";
        console.error(`npm test: no PostgreSQL at 127.0.0.1:5432, and an embedded one could not start: ${error.reason}; ${fix}or run a PostgreSQL at 127.0.0.1:5432, or set TEST_DATABASE_URL`);
        return 1;
      }
      url = embedded.connectionString;
    }
  }
  // Readable output on the console; TAP in a file, only to count for the closing line.
  const tapDir = mkdtempSync(path.join(os.tmpdir(), "fila-llm-tap-"));
  const tapFile = path.join(tapDir, "results.tap");
  try {
    const child = spawn(
      process.execPath,
      [
        "--test",
        "--test-concurrency=2",
        "--test-reporter=spec",
        "--test-reporter-destination=stdout",
        "--test-reporter=tap",
        `--test-reporter-destination=${tapFile}`,
        ...files,
      ],
      { stdio: "inherit", env: { ...process.env, TEST_DATABASE_URL: url } },
    );
    const code = await new Promise<number>((resolve) => child.on("exit", (c, signal) => resolve(c ?? (signal ? 1 : 0))));
    const tap = readFileSync(tapFile, "utf8");
    const count = (name: string) => {
      const match = new RegExp(`^# ${name} (\\d+)$`, "m").exec(tap);
      return match ? Number(match[1]) : NaN;
    };
    const passed = count("pass");
    const failed = count("fail");
    const skipped = count("skipped");
    // Skips are named, so that a check that did not run is never taken for one that passed.
    console.log(`\n${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}`);
    // A run that counted nothing, or a failure, must not pass.
    return code === 0 && failed === 0 && passed > 0 ? 0 : Math.max(code, 1);
  } finally {
    rmSync(tapDir, { recursive: true, force: true });
    await embedded?.stop();
    if (embeddedDir) rmSync(embeddedDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
