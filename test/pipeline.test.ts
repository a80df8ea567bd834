/**
 * The whole pipeline with a real worker in this process: INSERT → job →
 * LLM request → answered row, against real PostgreSQL and the test LLM server.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { createTestDatabase, insert, reset, type TestDatabase } from "./support/db";
import { referenceCount } from "./support/tiktoken";
import { defaultAnswer, FakeLlm, serverTokens } from "./support/llm_server";
import { eventually, startInProcessWorker, testEnv, type InProcessWorker } from "./support/worker";

let db: TestDatabase;
let llm: FakeLlm;
let worker: InProcessWorker;
// Where this test's lines start in the shared worker's log.
let logMark = 0;
const logsOfThisTest = () => worker.logs.slice(logMark);

before(async () => {
  db = await createTestDatabase();
  llm = await FakeLlm.start();
  worker = await startInProcessWorker(
    db,
    testEnv(llm.origin, { LLM_MAX_ATTEMPTS: "3", LLM_RETRY_DELAY_SECONDS: "0.2", LLM_OUTAGE_MAX_BACKOFF_SECONDS: "1" }),
  );
});
after(async () => {
  await worker.stop();
  await llm.stop();
  await db.drop();
});
beforeEach(async () => {
  llm.behaviour = () => ({});
  llm.requests.length = 0;
  llm.maxInFlight = 0;
  await reset(db.pool);
  logMark = worker.logs.length;
});

async function rowsOf(ids: number[]) {
  const { rows } = await db.pool.query(
    `SELECT a.*, o.error_message, o.attempts, o.model, o.provider, o.server_tokens_in, o.server_tokens_out
       FROM fila_llm_anahuac a LEFT JOIN fila_llm_outcome o ON o.prompt_id = a.id
      WHERE a.id = ANY($1) ORDER BY a.id`,
    [ids],
  );
  return rows;
}

async function settled(ids: number[], timeoutMs = 20_000) {
  return eventually(
    async () => {
      const rows = await rowsOf(ids);
      return rows.length === ids.length && rows.every((r) => r.estatus !== "pendiente") ? rows : null;
    },
    timeoutMs,
    `rows ${ids.join(",")} to leave pendiente`,
  );
}

describe("an inserted prompt is answered", () => {
  test("each answer lands on its own row, with js-tiktoken's counts, the time, the model and the server's counts", async () => {
    llm.behaviour = () => ({ delayMs: 150 });
    const prompts = ["Escribe un poema corto sobre la programación.", "¿Qué es PostgreSQL?", "Explain BPE in one line."];
    const ids = await insert(db.pool, ...prompts);
    const rows = await settled(ids);
    rows.forEach((row, i) => {
      assert.equal(row.estatus, "listo");
      assert.equal(row.prompt, prompts[i]);
      assert.equal(row.respuesta, defaultAnswer(prompts[i]));
      assert.equal(row.tokens_in, referenceCount(prompts[i]));
      assert.equal(row.tokens_out, referenceCount(defaultAnswer(prompts[i])));
      assert.ok(Number(row.tiempo_ejecucion) >= 0.15 && Number(row.tiempo_ejecucion) < 5, `tiempo_ejecucion ${row.tiempo_ejecucion}`);
      assert.match(row.tiempo_ejecucion, /^\d+\.\d{2}$/);
      assert.ok(row.fecha_out instanceof Date && row.fecha_out >= row.fecha_in);
      assert.equal(row.model, "test-model");
      assert.equal(row.provider, "ollama");
      assert.equal(row.server_tokens_in, serverTokens(prompts[i]));
      assert.equal(row.error_message, null);
    });
    const perPromptLines = logsOfThisTest().filter((l) => / prompt \d+ listo /.test(l) || /\[prompt\] prompt \d+ listo/.test(l));
    for (const id of ids) assert.ok(perPromptLines.some((l) => l.includes(`prompt ${id} listo`) && /tokensIn=\d+ tokensOut=\d+/.test(l)));
  });

  test("prompts run one at a time, oldest id first, across statements", async () => {
    llm.behaviour = () => ({ delayMs: 5 });
    const first = await insert(db.pool, ...Array.from({ length: 20 }, (_, i) => `lote A ${String(i).padStart(2, "0")}`));
    const second = await insert(db.pool, ...Array.from({ length: 5 }, (_, i) => `lote B ${i}`));
    const ids = [...first, ...second];
    await settled(ids);
    const { rows } = await db.pool.query("SELECT id, prompt FROM fila_llm_anahuac WHERE id = ANY($1)", [ids]);
    const promptToId = new Map(rows.map((r) => [r.prompt, r.id]));
    const seen = llm.generateRequests.map((r) => promptToId.get(r.prompt!)).filter((id) => id !== undefined);
    assert.deepEqual(seen, [...ids].sort((a, b) => a - b));
    assert.equal(llm.maxInFlight, 1);
  });
});

describe("unusual prompts end listo or with a clear error, and nothing crashes", () => {
  test("an empty or blank prompt is an error without an LLM call", async () => {
    const ids = await insert(db.pool, "", "   \n\t ");
    const rows = await settled(ids);
    for (const row of rows) {
      assert.equal(row.estatus, "error");
      assert.equal(row.error_message, "the prompt is empty");
      assert.ok(row.fecha_out instanceof Date);
    }
    assert.equal(llm.generateRequests.length, 0);
  });

  test("a 1 MB prompt, emoji, accents, quotes and SQL-looking text arrive intact and end listo", async () => {
    const prompts = [
      // Prose, so that plain js-tiktoken (quadratic on one long run) can check the count.
      "La programación es el arte de decirle a otro humano lo que uno quiere que haga la computadora. ".repeat(11_000).slice(0, 1024 * 1024),
      "Dime 😀👩‍👩‍👧 y ñandú, acción, pingüino — «comillas» \"dobles\" 'simples' `graves`",
      "'); DROP TABLE fila_llm_anahuac; -- SELECT * FROM pg_shadow; $1 $$ \\x00",
    ];
    const ids = await insert(db.pool, ...prompts);
    const rows = await settled(ids, 60_000);
    rows.forEach((row, i) => {
      assert.equal(row.estatus, "listo", row.error_message);
      assert.equal(llm.generateRequests[i].prompt, prompts[i]);
      assert.equal(row.respuesta, defaultAnswer(prompts[i]));
    });
    assert.equal(rows[0].tokens_in, referenceCount(prompts[0]));
    // The SQL-looking prompt was data, not a statement: the table and its three rows are all there.
    const { rows: stillThere } = await db.pool.query("SELECT count(*)::int AS n FROM fila_llm_anahuac");
    assert.equal(stillThere[0].n, 3);
  });
});

describe("LLM errors", () => {
  test("an HTTP 400 marks the row error at once, with the server's message readable by SQL", async () => {
    llm.behaviour = (r) =>
      r.prompt === "demasiado largo" ? { status: 400, rawBody: JSON.stringify({ error: "prompt too long; exceeded max context length by 301 tokens" }) } : {};
    const [id] = await insert(db.pool, "demasiado largo");
    const [row] = await settled([id]);
    assert.equal(row.estatus, "error");
    assert.match(row.error_message, /HTTP 400: prompt too long; exceeded max context length by 301 tokens/);
    assert.ok(row.tiempo_ejecucion !== null);
    assert.equal(llm.generateRequests.length, 1);
  });

  test("a prompt that keeps failing while others succeed becomes error after LLM_MAX_ATTEMPTS", async () => {
    llm.behaviour = (r) => (r.prompt === "veneno" ? { status: 500 } : r.prompt === "basura" ? { rawBody: "not json at all" } : {});
    const ids = await insert(db.pool, "veneno", "bueno 1", "basura", "bueno 2");
    const rows = await settled(ids, 30_000);
    assert.deepEqual(rows.map((r) => r.estatus), ["error", "listo", "error", "listo"]);
    assert.match(rows[0].error_message, /HTTP 500.*failed 3 times; LLM_MAX_ATTEMPTS=3/);
    assert.match(rows[2].error_message, /not JSON.*failed 3 times/);
    assert.equal(rows[0].attempts, 3);
    assert.equal(llm.generateRequests.filter((r) => r.prompt === "veneno").length, 3);
  });

  test("while the LLM is down no prompt is marked error; they are answered once it is back", async () => {
    await llm.stop();
    const ids = await insert(db.pool, "durante la caída 1", "durante la caída 2", "durante la caída 3");
    await new Promise((r) => setTimeout(r, 3000));
    const during = await rowsOf(ids);
    assert.deepEqual(during.map((r) => r.estatus), ["pendiente", "pendiente", "pendiente"]);
    assert.equal(logsOfThisTest().filter((l) => l.includes("LLM unavailable")).length, 1, "one line per state change");
    await llm.restart();
    const rows = await settled(ids);
    assert.deepEqual(rows.map((r) => r.estatus), ["listo", "listo", "listo"]);
    assert.equal(logsOfThisTest().filter((l) => l.includes("LLM is answering again")).length, 1);
  });

  test("an unknown model is a configuration fault: logged loudly, prompts wait instead of failing", async () => {
    llm.models.delete("test-model");
    const ids = await insert(db.pool, "espera al modelo");
    await eventually(async () => logsOfThisTest().some((l) => l.includes("LLM configuration fault") && l.includes("not found")), 10_000, "the config fault log");
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await rowsOf(ids))[0].estatus, "pendiente");
    llm.models.add("test-model");
    assert.equal((await settled(ids))[0].estatus, "listo");
  });
});

describe("rows changed while queued", () => {
  test("a row deleted, or set to listo by hand, is skipped; the rest run", async () => {
    await db.pool.query("UPDATE fila_llm_control SET paused = true");
    try {
      await new Promise((r) => setTimeout(r, 1200)); // the gate caches the control row for 1 s
      const ids = await insert(db.pool, "se borra", "se marca a mano", "se procesa");
      await db.pool.query("DELETE FROM fila_llm_anahuac WHERE id = $1", [ids[0]]);
      await db.pool.query("UPDATE fila_llm_anahuac SET estatus = 'listo', respuesta = 'a mano' WHERE id = $1", [ids[1]]);
      await db.pool.query("UPDATE fila_llm_control SET paused = false");
      const rows = await settled(ids.slice(1));
      assert.deepEqual(rows.map((r) => [r.estatus, r.respuesta]), [["listo", "a mano"], ["listo", defaultAnswer("se procesa")]]);
      assert.deepEqual(llm.generateRequests.map((r) => r.prompt), ["se procesa"]);
      await eventually(async () => logsOfThisTest().some((l) => l.includes(`prompt ${ids[0]} skipped`)), 5000, "skip log");
      assert.ok(logsOfThisTest().some((l) => l.includes(`prompt ${ids[1]} skipped`)));
      const { rows: left } = await db.pool.query("SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'process_prompt'");
      assert.equal(left[0].n, 0);
    } finally {
      await db.pool.query("UPDATE fila_llm_control SET paused = false");
    }
  });
});

describe("server faults that are not the prompt's", () => {
  test("a lone pending prompt that gets 503 on every try, while the health probe answers, is never marked error", async () => {
    let failing = true;
    llm.behaviour = () => (failing ? { status: 503 } : {});
    const [id] = await insert(db.pool, "sola durante la caída");
    // LLM_MAX_ATTEMPTS is 3 here: more tries than that, and the row is still pendiente and uncharged.
    await eventually(async () => llm.generateRequests.filter((r) => r.prompt === "sola durante la caída").length >= 5, 15_000, "5 tries");
    const [during] = await rowsOf([id]);
    assert.equal(during.estatus, "pendiente");
    // Never charged: a charged failure would have written its outcome row (attempts 1, 2, ...).
    assert.equal(during.attempts, null, `attempts charged: ${during.attempts}`);
    failing = false;
    const [row] = await settled([id]);
    assert.equal(row.estatus, "listo");
  });

  test("a prompt's retry waits as long as the server's Retry-After asks", async () => {
    let first = true;
    llm.behaviour = (r) => {
      if (r.prompt !== "vuelva en 1 s" || !first) return {};
      first = false;
      return { status: 503, headers: { "Retry-After": "1" } };
    };
    const ids = await insert(db.pool, "vuelva en 1 s", "otra pendiente");
    const rows = await settled(ids);
    assert.deepEqual(rows.map((r) => r.estatus), ["listo", "listo"]);
    const tries = llm.generateRequests.filter((r) => r.prompt === "vuelva en 1 s");
    assert.equal(tries.length, 2);
    const waitedMs = tries[1].startedAtMs - tries[0].endedAtMs!;
    // LLM_RETRY_DELAY_SECONDS is 0.2 here; the server asked for 1 s (LLM_OUTAGE_MAX_BACKOFF_SECONDS, the cap).
    assert.ok(waitedMs >= 950, `retried after ${waitedMs} ms`);
  });
});
