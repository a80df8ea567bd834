/**
 * The old design, rebuilt in Node for comparison: one process per prompt. Each run loads the
 * token encoder, connects to PostgreSQL, takes the oldest pending row, asks the LLM, counts the
 * tokens and writes the row, then exits. bench/queue.ts starts it again and again.
 *
 *   node dist/bench/legacy_process_per_prompt.js      (env: DATABASE_URL, LLM_BASE_URL)
 *
 * Exit code 0: one prompt answered; 3: nothing pending.
 */
import { Client } from "pg";
import type * as JsTiktoken from "js-tiktoken" with { "resolution-mode": "import" };

const NOTHING_PENDING = 3;

async function main(): Promise<number> {
  // The whole package, as a script that just wants "the tokenizer" would load it.
  const { getEncoding }: typeof JsTiktoken = require("js-tiktoken");
  const encoder = getEncoding("cl100k_base");
  const db = new Client({ connectionString: process.env.DATABASE_URL });
  await db.connect();
  try {
    const { rows } = await db.query(
      "SELECT id, prompt FROM fila_llm_anahuac WHERE estatus = 'pendiente' ORDER BY id LIMIT 1",
    );
    if (rows.length === 0) return NOTHING_PENDING;
    const { id, prompt } = rows[0];
    const startedMs = performance.now();
    const response = await fetch(`${process.env.LLM_BASE_URL}/api/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "test-model", prompt, stream: false }),
    });
    const answer = (await response.json()) as { response: string };
    const seconds = (performance.now() - startedMs) / 1000;
    await db.query(
      `UPDATE fila_llm_anahuac SET respuesta = $2, tokens_in = $3, tokens_out = $4, fecha_out = now(),
              tiempo_ejecucion = round($5::numeric, 2), estatus = 'listo'
        WHERE id = $1`,
      [id, answer.response, encoder.encode(prompt).length, encoder.encode(answer.response).length, seconds],
    );
    return 0;
  } finally {
    await db.end();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
