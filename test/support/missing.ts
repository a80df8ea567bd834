/**
 * What a test does when something it needs is not on this machine (a program
 * from the package manager, say): on a developer's machine it is skipped, with
 * the reason; on CI it fails, with the same reason. CI's machine is set up by
 * .ci/run, so there a missing dependency is a bug of .ci/run, and a skip would
 * let a check that never ran pass as a green run.
 *
 * Only for what is missing. A machine's passing state (a port that another
 * process holds) is not a dependency and keeps its plain `t.skip`.
 */
import assert from "node:assert/strict";
import type { TestContext } from "node:test";

/** True on CI: `CI=true` (or `1`), as .ci/run and most CI services set it. */
export function onCi(env: NodeJS.ProcessEnv = process.env): boolean {
  return /^(true|1)$/i.test(env.CI ?? "");
}

/** Skips this test for `reason`, or, on CI, fails it with `reason`. */
export function missingDependency(t: TestContext, reason: string): void {
  if (onCi()) assert.fail(`${reason} (CI=true: a missing dependency fails the test instead of skipping it)`);
  t.skip(reason);
}
