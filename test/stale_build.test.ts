/**
 * The CLI refuses to run code compiled from sources older than those beside
 * it (a `git pull` without `npm run build`), in one line that names the fix;
 * and `npm run build` records which sources it compiled.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { sourcesHash } from "../src/build_stamp";
import { projectRoot } from "../src/paths";
import { runCli } from "./support/ops";

const STALE = "fila-llm: the compiled code in dist/ was not built from the sources in src/ and tasks/ (they changed since, e.g. with a git pull): run `npm run build`\n";

let copy: string;

/** `node dist/src/cli.js ARGS` of the copy. */
const runCopy = (args: string[]) => runCli(args, {}, copy);

/** The exit code of npm's prepare check in the copy: 0 if dist/ is fresh. */
const prepareCheck = () => spawnSync(process.execPath, [path.join(copy, "dist", "src", "build_stamp.js"), "--check"]).status;

before(() => {
  copy = mkdtempSync(path.join(os.tmpdir(), "fila-llm-stale-"));
  for (const item of ["dist", "src", "tasks", "tsconfig.json", "package.json"]) cpSync(path.join(projectRoot, item), path.join(copy, item), { recursive: true });
  symlinkSync(path.join(projectRoot, "node_modules"), path.join(copy, "node_modules"));
});
after(() => rmSync(copy, { recursive: true, force: true }));

describe("a stale build", () => {
  test("`npm run build` stamps dist/ with the hash of the sources it compiled", () => {
    assert.match(readFileSync(path.join(projectRoot, "dist", "sources.sha256"), "utf8"), /^[0-9a-f]{64}\n$/);
    assert.equal(readFileSync(path.join(projectRoot, "dist", "sources.sha256"), "utf8").trim(), sourcesHash(projectRoot));
  });

  test("a changed, added or removed source file stops every command in one line naming `npm run build`, exit 1", async () => {
    assert.equal((await runCopy(["--help"])).code, 0, "the fresh copy runs");
    // What npm's prepare asks before it builds.
    assert.equal(prepareCheck(), 0, "a fresh build needs no building");
    const file = path.join(copy, "src", "window.ts");
    const original = readFileSync(file, "utf8");
    const changes: [string, () => void, () => void][] = [
      ["a changed file", () => appendFileSync(file, "\n// changed by git pull\n"), () => writeFileSync(file, original)],
      ["a new file", () => writeFileSync(path.join(copy, "tasks", "new_task.ts"), "export {};\n"), () => rmSync(path.join(copy, "tasks", "new_task.ts"))],
      ["a removed file", () => rmSync(file), () => writeFileSync(file, original)],
    ];
    for (const [what, change, undo] of changes) {
      change();
      for (const args of [["status"], ["start"], ["--help"]]) {
        const r = await runCopy(args);
        assert.equal(r.code, 1, `${what}: ${args.join(" ")}`);
        assert.equal(r.stderr, STALE, `${what}: ${args.join(" ")}`);
        assert.equal(r.stdout, "");
      }
      assert.equal(prepareCheck(), 1, `${what}: prepare builds`);
      undo();
      assert.equal((await runCopy(["--help"])).code, 0, `${what}, undone: the copy runs again`);
    }
  });

  test("dist/ without its stamp counts as stale; dist/ without sources beside it is not checked", async () => {
    rmSync(path.join(copy, "dist", "sources.sha256"));
    assert.equal((await runCopy(["--help"])).stderr, STALE);
    rmSync(path.join(copy, "src"), { recursive: true });
    const r = await runCopy(["--help"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: fila-llm/);
  });
});
