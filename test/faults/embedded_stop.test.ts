/**
 * `npm start` with no DATABASE_URL runs on the embedded PostgreSQL. A SIGTERM
 * there must stop as gracefully as with a real server: the answer in flight
 * is written before the embedded server stops, and the process exits 0.
 *
 * The worker runs from a copy of the project in a temporary folder, so that
 * its embedded data folder (.data/ beside dist/) is not this checkout's.
 */
import assert from "node:assert/strict";
import { chmodSync, cpSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Client } from "pg";
import { EMBEDDED_PORT, embeddedUrl, startEmbeddedPostgres } from "../../src/db";
import { projectRoot } from "../../src/paths";
import { defaultAnswer, FakeLlm } from "../support/llm_server";
import { eventually, startChildWorker, testEnv } from "../support/worker";

let llm: FakeLlm;
let copy: string;

before(async () => {
  llm = await FakeLlm.start();
  copy = mkdtempSync(path.join(os.tmpdir(), "fila-llm-embedded-"));
  // As root, the server runs as the postgres user, which must reach .data/ inside the copy.
  chmodSync(copy, 0o755);
  for (const item of ["dist", "migrations", "crontab", "package.json"]) cpSync(path.join(projectRoot, item), path.join(copy, item), { recursive: true });
  symlinkSync(path.join(projectRoot, "node_modules"), path.join(copy, "node_modules"));
});
after(async () => {
  await llm.stop();
  rmSync(copy, { recursive: true, force: true });
});

/**
 * One query on its own connection, closed before returning. A Client, not a
 * Pool: pool.end() resolves before the server has seen the connection close,
 * and a server stopped in that instant sends it an error nobody listens for.
 */
async function query(url: string, sql: string): Promise<unknown[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

/** True if something accepts connections on the port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });
}

describe("SIGTERM on the embedded PostgreSQL", () => {
  test("during a 3 s LLM call: the answer is written before the server stops, and the process exits 0", async (t) => {
    // A port that another process holds is the machine's state, not a missing
    // dependency: a plain skip, on CI too (see test/support/missing.ts).
    if (await listening(EMBEDDED_PORT)) {
      t.skip(`port ${EMBEDDED_PORT} is taken (an \`npm start\` without DATABASE_URL running here?)`);
      return;
    }
    llm.behaviour = () => ({ delayMs: 3_000 });
    const worker = startChildWorker(testEnv(llm.origin), copy);
    try {
      await worker.waitFor(/worker ready/, 60_000);
      assert.ok(worker.output.some((l) => l.includes("DATABASE_URL is not set: using an embedded PostgreSQL")), "it says it runs embedded");
      await query(embeddedUrl(EMBEDDED_PORT), "INSERT INTO fila_llm_anahuac (prompt) VALUES ('en el servidor embebido')");
      // Started, not finished (waitForRequests waits for answers): the signal lands mid-call.
      await eventually(async () => llm.generateRequests.length > 0, 20_000, "the LLM call to start");
      assert.equal(llm.generateRequests[0].endedAtMs, null, "the call is still in flight when the signal comes");
      assert.equal(await worker.stop("SIGTERM"), 0, `exit code; output:\n${worker.output.join("\n")}`);
    } finally {
      await worker.stop("SIGKILL");
    }
    assert.equal(await listening(EMBEDDED_PORT), false, "the embedded server stopped with the worker");
    assert.equal(llm.generateRequests.length, 1);
    assert.ok(llm.generateRequests[0].endedAtMs !== null, "the call in flight was allowed to finish");

    // The row, read from the same data folder once the worker is gone.
    const server = await startEmbeddedPostgres(path.join(copy, ".data", "postgres"), EMBEDDED_PORT, true);
    try {
      const rows = await query(server.connectionString, "SELECT estatus, respuesta FROM fila_llm_anahuac");
      assert.deepEqual(rows, [{ estatus: "listo", respuesta: defaultAnswer("en el servidor embebido") }]);
    } finally {
      await server.stop();
    }
  });
});
