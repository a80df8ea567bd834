/**
 * `fila-llm --help`, `-h` and `help` print the usage and exit 0, for the CLI
 * and for each command, before any setting is read or any database opened.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { OPS_COMMANDS } from "../src/ops/commands";
import { runCli } from "./support/ops";

const ALL_COMMANDS = ["start", "migrate", ...OPS_COMMANDS];
// A setting that stops every other command: help must not read the settings.
const BAD_ENV = { WINDOW_START: "1am" };

describe("the CLI's help", () => {
  for (const flag of ["--help", "-h", "help"]) {
    test(`\`fila-llm ${flag}\` prints the usage of every command and exits 0`, async () => {
      const r = await runCli([flag], BAD_ENV);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "");
      assert.match(r.stdout, /^Usage: fila-llm \[COMMAND\] \[OPTIONS\]/);
      for (const command of [...ALL_COMMANDS, "help"]) assert.match(r.stdout, new RegExp(`^  ${command}\\b`, "m"), command);
    });
  }

  const cases: [string[], string][] = [
    [["status", "--help"], "status"],
    [["report", "-h"], "report"],
    [["help", "retry"], "retry"],
    [["--help", "open-now"], "open-now"],
    [["cancel", "12", "--help"], "cancel"],
    [["start", "--help"], "start"],
    [["help", "migrate"], "migrate"],
  ];
  for (const [args, command] of cases) {
    test(`\`fila-llm ${args.join(" ")}\` prints only the usage of ${command} and exits 0`, async () => {
      const r = await runCli(args, BAD_ENV);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "");
      assert.match(r.stdout, new RegExp(`^Usage: fila-llm ${command} `));
      const described = ALL_COMMANDS.filter((c) => new RegExp(`^  ${c}\\b`, "m").test(r.stdout));
      assert.deepEqual(described, [command]);
    });
  }

  test("an unknown command, or help for one, says so with the usage on stderr and exits 64", async () => {
    for (const args of [["bogus"], ["help", "bogus"], ["--verbose"]]) {
      const r = await runCli(args, BAD_ENV);
      assert.equal(r.code, 64, args.join(" "));
      assert.equal(r.stdout, "");
      assert.match(r.stderr, new RegExp(`^fila-llm: unknown command "${args.at(-1)}"`));
      assert.match(r.stderr, /Usage: fila-llm/);
    }
  });
});
