/** `npm run demo`: a newcomer's first look, with no LLM and no waiting for 01:00. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { projectRoot } from "../src/paths";

test("the demo answers its sample prompts within 30 s, prints the rows and the status, says it is a demo and how to run the real thing", async () => {
  const started = Date.now();
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(
      process.execPath,
      [path.join(projectRoot, "dist", "src", "demo.js")],
      // No settings at all: a newcomer's machine, outside the project folder.
      { cwd: os.tmpdir(), env: { PATH: process.env.PATH ?? "" }, timeout: 90_000 },
      (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr }),
    ),
  );
  const seconds = (Date.now() - started) / 1000;
  assert.equal(code, 0, stderr);
  assert.ok(seconds < 30, `took ${seconds} s`);
  assert.match(stdout, /^fila-llm DEMO: .*No real model answers here\./m);
  assert.match(stdout, /INSERT INTO fila_llm_anahuac \(prompt\) VALUES/);
  const rows = stdout.split("\n").filter((l) => /^ \d+ +\| listo /.test(l));
  assert.equal(rows.length, 5, stdout);
  assert.match(stdout, /\(5 rows\)/);
  assert.match(stdout, /^Queue +pendiente 0 · listo 5 · error 0$/m);
  assert.match(stdout, /To run fila-llm for real[\s\S]*npm start/);
});
