/**
 * The rule for a test whose dependency is missing (test/support/missing.ts):
 * skipped with its reason on a developer's machine, failed with it on CI. A
 * small test file is run by node's test runner as a child, once each way.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { onCi } from "./support/missing";

const dir = mkdtempSync(path.join(os.tmpdir(), "fila-llm-missing-"));
const fixture = path.join(dir, "needs_frobnicator.test.js");
writeFileSync(
  fixture,
  `const { test } = require("node:test");
const { missingDependency } = require(${JSON.stringify(path.join(__dirname, "support", "missing.js"))});
test("needs the frobnicator", (t) => missingDependency(t, "/usr/bin/frobnicator is not installed"));
`,
);
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the fixture as its own test run, with CI set to `ci` (or unset). */
function runFixture(ci: string | undefined): Promise<{ code: number; stdout: string }> {
  // Not this run's NODE_TEST_CONTEXT: the child reports on its own stdout, as a top-level run.
  const { NODE_TEST_CONTEXT: _, CI: __, ...env } = process.env;
  return new Promise((resolve) =>
    execFile(
      process.execPath,
      ["--test", "--test-reporter=tap", fixture],
      { env: ci === undefined ? env : { ...env, CI: ci }, timeout: 30_000 },
      (error, stdout) => resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout }),
    ),
  );
}

describe("a test whose dependency is missing", () => {
  test("on a developer's machine it is skipped, with the reason", async () => {
    const r = await runFixture(undefined);
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, /^ok 1 - needs the frobnicator # SKIP \/usr\/bin\/frobnicator is not installed$/m);
    assert.match(r.stdout, /^# skipped 1$/m);
  });

  test("on CI (CI=true) it fails, with the reason", async () => {
    const r = await runFixture("true");
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, /^not ok 1 - needs the frobnicator$/m);
    assert.match(r.stdout, /\/usr\/bin\/frobnicator is not installed \(CI=true: a missing dependency fails the test instead of skipping it\)/);
    assert.match(r.stdout, /^# skipped 0$/m);
  });

  test("CI counts as set for true and 1, in any case, and not for false, 0 or empty", () => {
    for (const value of ["true", "TRUE", "True", "1"]) assert.equal(onCi({ CI: value }), true, value);
    for (const value of [undefined, "", "false", "0", "no"]) assert.equal(onCi({ CI: value }), false, String(value));
  });
});
