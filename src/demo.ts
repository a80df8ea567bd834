/**
 * `npm run demo`: a first look at fila-llm without an LLM and without waiting
 * for 01:00. Everything is throwaway and on this machine: an embedded
 * PostgreSQL in a temporary folder, the test suite's LLM stand-in (a real
 * HTTP server on 127.0.0.1 that streams short canned answers in Ollama's
 * format), and a worker whose window is always open. It queues a few sample
 * prompts with SQL, waits for them, prints the rows as `SELECT` shows them
 * and what `status` says, and tells how to run the real thing.
 *
 * Nothing of this runs in `npm start`; the stand-in lives with the tests
 * (test/support/llm_server.ts) and is only loaded here.
 */
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { FakeLlm, wordTokens } from "../test/support/llm_server";
import { parseConfig } from "./config";
import { createPool, endPool } from "./db";
import { EmbeddedPostgresError, startEmbeddedPostgres } from "./embedded_postgres";
import { setLogLevel } from "./log";
import { migrate } from "./migrate";
import { readStatus, renderStatus } from "./ops/status";
import { startWorker } from "./worker";

const SAMPLE_PROMPTS = [
  "Escribe un poema corto sobre la programación.",
  "¿Qué es PostgreSQL, en una frase?",
  "Dame tres ideas para una tesis de ingeniería.",
  "Resume en una línea qué hace una cola de mensajes.",
  "Traduce al inglés: la noche es larga y la GPU está libre.",
];

// What the stand-in answers: a few words per prompt, streamed a token every 40 ms.
const CANNED_ANSWERS = [
  "El código duerme, la máquina sueña: un punto y coma separa la noche del día.",
  "PostgreSQL es una base de datos relacional libre, robusta y extensible.",
  "1) Colas de trabajo fiables; 2) ahorro de energía en GPUs; 3) evaluación de modelos pequeños.",
  "Una cola guarda el trabajo pendiente y lo entrega en orden a quien lo procesa.",
  "The night is long and the GPU is free.",
];
const TOKEN_DELAY_MS = 40;
// The demo says it failed rather than hang on a machine too slow for it.
const DEMO_TIMEOUT_MS = 60_000;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Rows as psql prints them: a header, a rule, one line per row. */
function table(rows: Record<string, unknown>[]): string {
  if (rows.length === 0) return "(0 rows)";
  const columns = Object.keys(rows[0]);
  const cell = (v: unknown) => (v === null ? "" : v instanceof Date ? v.toISOString().slice(0, 19).replace("T", " ") : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) => " " + values.map((v, i) => v.padEnd(widths[i])).join(" | ");
  return [line(columns), "-" + widths.map((w) => "-".repeat(w)).join("-+-") + "-", ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join("\n") + `\n(${rows.length} rows)`;
}

async function main(): Promise<void> {
  console.log("fila-llm DEMO: a throwaway PostgreSQL and a stand-in LLM on this machine. No real model answers here.\n");
  setLogLevel("warn");
  const dir = mkdtempSync(path.join(os.tmpdir(), "fila-llm-demo-"));
  const cleanups: (() => Promise<unknown>)[] = [async () => rmSync(dir, { recursive: true, force: true })];
  try {
    const database = await startEmbeddedPostgres(dir, await freePort());
    cleanups.unshift(() => database.stop());
    const pool = createPool(database.connectionString);
    cleanups.unshift(() => endPool(pool));
    await migrate(pool);

    const llm = await FakeLlm.start();
    cleanups.unshift(() => llm.stop());
    llm.behaviour = (request) => {
      const i = SAMPLE_PROMPTS.indexOf(request.prompt ?? "");
      return { tokens: wordTokens(CANNED_ANSWERS[i] ?? "Una respuesta de demostración."), tokenDelayMs: TOKEN_DELAY_MS };
    };
    const config = parseConfig({ LLM_BASE_URL: llm.origin, LLM_MODEL: "demo-model", WINDOW_START: "00:00", WINDOW_END: "24:00", WINDOW_TZ: "UTC" });
    llm.models.add("demo-model");
    const worker = await startWorker(config, pool, database.connectionString, { crontab: "" });
    cleanups.unshift(() => worker.stop());

    console.log("Queueing the sample prompts, as anyone would, with SQL:\n");
    console.log(`  INSERT INTO fila_llm_anahuac (prompt) VALUES\n${SAMPLE_PROMPTS.map((p) => `    ('${p}')`).join(",\n")};\n`);
    await pool.query("INSERT INTO fila_llm_anahuac (prompt) SELECT unnest($1::text[])", [SAMPLE_PROMPTS]);

    const deadline = Date.now() + DEMO_TIMEOUT_MS;
    for (;;) {
      const { rows } = await pool.query("SELECT count(*)::int AS n FROM fila_llm_anahuac WHERE estatus = 'pendiente'");
      if (rows[0].n === 0) break;
      if (Date.now() > deadline) throw new Error(`the prompts were not answered within ${DEMO_TIMEOUT_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, 200));
    }

    console.log("The answers, one at a time and oldest first, written back to their rows:\n");
    console.log("  SELECT id, estatus, tokens_in, tokens_out, tiempo_ejecucion, left(respuesta, 60) AS respuesta FROM fila_llm_anahuac ORDER BY id;\n");
    const { rows } = await pool.query(
      "SELECT id, estatus, tokens_in, tokens_out, tiempo_ejecucion, left(respuesta, 60) AS respuesta FROM fila_llm_anahuac ORDER BY id",
    );
    console.log(table(rows) + "\n");
    console.log("And what `npm run status` shows:\n");
    console.log(renderStatus(await readStatus(pool, config.window)) + "\n");
    console.log(
      [
        "That was a demo. To run fila-llm for real, with your own LLM server:",
        "  cp .env.example .env",
        "  # in .env: LLM_BASE_URL=http://<your Ollama>:11434 and LLM_MODEL=<a model it has>",
        "  #          (or LLM_PROVIDER=openai for vLLM or llama.cpp's llama-server), and DATABASE_URL",
        "  npm start",
        "Prompts then run between WINDOW_START and WINDOW_END (01:00–06:00 by default); see README.md.",
      ].join("\n"),
    );
  } finally {
    for (const cleanup of cleanups) await cleanup().catch(() => {});
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    const reason = error instanceof EmbeddedPostgresError ? `the embedded PostgreSQL could not start: ${error.message}` : String((error as Error)?.message ?? error);
    console.error(`fila-llm demo failed: ${reason}`);
    process.exit(1);
  },
);
