/**
 * `npm start` with no DATABASE_URL runs on the embedded PostgreSQL. A SIGTERM
 * there must stop as gracefully as with a real server: the answer in flight
 * is written before the embedded server stops, and the process exits 0. When
 * that server cannot start, the worker says why in one line and exits 1.
 *
 * The worker runs from a copy of the project inside a folder of mode 0700,
 * as a clone in a home directory is (as root, the server runs as the postgres
 * OS user, which cannot enter it), so that its embedded server (.data/ in the
 * copy, or as root /var/lib/fila-llm/<copy>-<hash>/) is not this checkout's.
 */
import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { Client } from "pg";
import { EMBEDDED_PORT, embeddedDataDir, embeddedDir, embeddedUrl, startEmbeddedPostgres } from "../../src/embedded_postgres";
import { projectRoot } from "../../src/paths";
import { defaultAnswer, FakeLlm } from "../support/llm_server";
import { eventually, startChildWorker, testEnv, type ChildWorker } from "../support/worker";

let llm: FakeLlm;
let home: string;
let copy: string;

before(async () => {
  llm = await FakeLlm.start();
  // mkdtemp makes it 0700, as a home directory is.
  home = mkdtempSync(path.join(os.tmpdir(), "fila-llm-home-"));
  copy = path.join(home, "fila-llm");
  mkdirSync(copy);
  for (const item of ["dist", "migrations", "crontab", "package.json"]) cpSync(path.join(projectRoot, item), path.join(copy, item), { recursive: true });
  symlinkSync(path.join(projectRoot, "node_modules"), path.join(copy, "node_modules"));
});
after(async () => {
  await llm.stop();
  // As root, the copy's embedded server lives outside it.
  rmSync(embeddedDir(copy), { recursive: true, force: true });
  rmSync(home, { recursive: true, force: true });
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

/** The worker's WARN and ERROR lines. */
function warnings(worker: ChildWorker): string[] {
  return worker.output.filter((l) => / (WARN|ERROR) /.test(l));
}

/** True if something accepts connections on the port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });
}

/**
 * Runs the copy's worker on its embedded PostgreSQL, inserts a prompt whose
 * LLM call takes 3 s, and calls `interrupt` while that call is in flight;
 * checks that the process exits 0 with the server stopped and the answer
 * written (read back from the same data folder).
 */
async function stopMidCall(t: TestContext, interrupt: (worker: ChildWorker) => void, options: { processGroup?: boolean } = {}): Promise<void> {
  // A port that another process holds is the machine's state, not a missing
  // dependency: a plain skip, on CI too (see test/support/missing.ts).
  if (await listening(EMBEDDED_PORT)) {
    t.skip(`port ${EMBEDDED_PORT} is taken (an \`npm start\` without DATABASE_URL running here?)`);
    return;
  }
  llm.requests.length = 0;
  llm.behaviour = () => ({ delayMs: 3_000 });
  const prompt = `en el servidor embebido (${t.name})`;
  const worker = startChildWorker(testEnv(llm.origin), copy, options);
  try {
    await worker.waitFor(/worker ready/, 60_000);
    const dataDir = embeddedDataDir(embeddedDir(copy));
    assert.ok(worker.output.some((l) => l.includes(`DATABASE_URL is not set: using an embedded PostgreSQL kept in ${dataDir}`)), "it says it runs embedded, and where");
    await query(embeddedUrl(EMBEDDED_PORT), `INSERT INTO fila_llm_anahuac (prompt) VALUES ('${prompt}')`);
    // Started, not finished (waitForRequests waits for answers): the signal lands mid-call.
    await eventually(async () => llm.generateRequests.length > 0, 20_000, "the LLM call to start");
    assert.equal(llm.generateRequests[0].endedAtMs, null, "the call is still in flight when the signal comes");
    interrupt(worker);
    assert.equal(await worker.exited, 0, `exit code; output:\n${worker.output.join("\n")}`);
    assert.deepEqual(warnings(worker), [], "a clean stop warns of nothing");
  } finally {
    await worker.stop("SIGKILL");
  }
  assert.equal(await listening(EMBEDDED_PORT), false, "the embedded server stopped with the worker");
  assert.equal(llm.generateRequests.length, 1);
  assert.ok(llm.generateRequests[0].endedAtMs !== null, "the call in flight was allowed to finish");
  assert.equal(statSync(home).mode & 0o777, 0o700, "the home folder was not opened to anyone");

  // The row, read from the same data folder once the worker is gone.
  const server = await startEmbeddedPostgres(embeddedDir(copy), EMBEDDED_PORT);
  try {
    const rows = await query(server.connectionString, `SELECT estatus, respuesta FROM fila_llm_anahuac WHERE prompt = '${prompt}'`);
    assert.deepEqual(rows, [{ estatus: "listo", respuesta: defaultAnswer(prompt) }]);
  } finally {
    await server.stop();
  }
}

describe("stopping a worker that runs on the embedded PostgreSQL, from a clone in a 0700 folder", () => {
  test("SIGTERM during a 3 s LLM call: the answer is written before the server stops, and the process exits 0", async (t) => {
    await stopMidCall(t, (worker) => worker.process.kill("SIGTERM"));
  });

  test("Ctrl-C in its terminal (SIGINT to its whole process group) during a 3 s LLM call: the same", async (t) => {
    await stopMidCall(t, (worker) => process.kill(-worker.process.pid!, "SIGINT"), { processGroup: true });
  });

  test("SIGTERM as soon as it is ready, 5 times: exit 0, the server stopped, and no warning of the connections the stop itself closed", async (t) => {
    if (await listening(EMBEDDED_PORT)) {
      t.skip(`port ${EMBEDDED_PORT} is taken (an \`npm start\` without DATABASE_URL running here?)`);
      return;
    }
    // Stopped in that instant, the embedded server used to cut the pool's
    // connections before they had closed (about every other stop here), and
    // each one was logged as "idle database connection lost".
    for (let run = 1; run <= 5; run++) {
      const worker = startChildWorker(testEnv(llm.origin), copy);
      try {
        await worker.waitFor(/worker ready/, 60_000);
        worker.process.kill("SIGTERM");
        assert.equal(await worker.exited, 0, `run ${run}: exit code; output:\n${worker.output.join("\n")}`);
        assert.deepEqual(warnings(worker), [], `run ${run}: a clean stop warns of nothing`);
        assert.ok(worker.output.some((l) => l.includes("INFO  [fila-llm] stopped")), `run ${run}: it says it stopped`);
      } finally {
        await worker.stop("SIGKILL");
      }
      assert.equal(await listening(EMBEDDED_PORT), false, `run ${run}: the embedded server stopped with the worker`);
    }
  });
});

describe("an embedded PostgreSQL that cannot start", () => {
  test("with its port taken, the worker says why and what to do in one line, with no stack trace, and exits 1", { timeout: 60_000 }, async (t) => {
    // Held by this test, so that the server cannot bind it.
    const holder = net.createServer();
    const held = await new Promise<boolean>((resolve) => {
      holder.once("error", () => resolve(false));
      holder.listen(EMBEDDED_PORT, "127.0.0.1", () => resolve(true));
    });
    if (!held) {
      t.skip(`port ${EMBEDDED_PORT} is taken by someone else`);
      return;
    }
    try {
      const worker = startChildWorker(testEnv(llm.origin), copy);
      const code = await worker.exited;
      assert.equal(code, 1, `exit code; output:\n${worker.output.join("\n")}`);
      const failures = worker.output.filter((l) => l.includes("could not start"));
      assert.deepEqual(failures, [
        `fila-llm: the embedded PostgreSQL could not start: port ${EMBEDDED_PORT} on 127.0.0.1 is in use; stop what listens there ` +
          "(another fila-llm's embedded PostgreSQL?), or set DATABASE_URL in .env to use a PostgreSQL server of your own",
      ]);
      assert.ok(!worker.output.some((l) => /^\s+at |Error:/.test(l)), `no stack trace; output:\n${worker.output.join("\n")}`);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });
});
