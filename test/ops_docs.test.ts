/**
 * docs/operations.md is a runnable runbook: every ```sql block (except one
 * marked `<!-- not run … -->` just above it) runs here, in order, against a
 * seeded test database, and each steering example has its effect.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { projectRoot } from "../src/paths";
import { createTestDatabase, type TestDatabase } from "./support/db";

const RUNBOOK = readFileSync(path.join(projectRoot, "docs", "operations.md"), "utf8");

/** The SQL blocks of the runbook, in order, with whether each is run. */
function sqlBlocks(markdown: string): { sql: string; run: boolean }[] {
  return [...markdown.matchAll(/(<!--\s*not run[^>]*-->\s*\n)?```sql\n([\s\S]*?)```/g)].map((m) => ({ sql: m[2], run: !m[1] }));
}

let db: TestDatabase;

before(async () => {
  db = await createTestDatabase();
  // Ids 1–50: listo on night 2026-11-26 (Mexico City), except 13, 26 and 42 in
  // 'error', and 43–50 'pendiente' (enqueued by the trigger). Prompt 46's job
  // is locked by a worker that died five hours ago.
  await db.pool.query(`
    INSERT INTO fila_llm_anahuac (id, prompt, respuesta, estatus, fecha_out, tiempo_ejecucion, tokens_in, tokens_out)
    SELECT g, 'prompt ' || g,
           CASE WHEN g <= 42 AND g NOT IN (13, 26, 42) THEN 'respuesta' END,
           CASE WHEN g IN (13, 26, 42) THEN 'error' WHEN g > 42 THEN 'pendiente' ELSE 'listo' END,
           CASE WHEN g <= 42 THEN (timestamptz '2026-11-26 01:00 America/Mexico_City' + g * interval '5 minutes')
                                  AT TIME ZONE current_setting('TimeZone') END,
           CASE WHEN g <= 42 THEN 60 + g END, 20, 300
      FROM generate_series(1, 50) g
     ORDER BY g;
    SELECT setval('fila_llm_anahuac_id_seq', 50);
    INSERT INTO fila_llm_outcome (prompt_id, estatus, error_message, attempts)
    VALUES (13, 'error', 'HTTP 500', 5), (26, 'error', 'HTTP 500', 5), (42, 'error', 'the prompt is empty', 0);
    UPDATE graphile_worker._private_jobs SET locked_at = now() - interval '5 hours', locked_by = 'dead-worker'
     WHERE key = fila_llm_job_key(46);
  `);
});
after(async () => {
  await db.drop();
});

describe("docs/operations.md", () => {
  test("every SQL block runs, in order, on this schema, and the steering examples take effect", async () => {
    const blocks = sqlBlocks(RUNBOOK);
    assert.ok(blocks.filter((b) => b.run).length >= 8, `only ${blocks.length} SQL blocks found`);
    for (const [i, block] of blocks.entries()) {
      if (!block.run) continue;
      await db.pool.query(block.sql).catch((error) => {
        throw new Error(`SQL block ${i + 1} of docs/operations.md failed: ${error.message}\n${block.sql}`);
      });
    }
    const rows = async (sql: string) => (await db.pool.query(sql)).rows;
    assert.deepEqual(await rows("SELECT id, estatus FROM fila_llm_anahuac WHERE id IN (13, 26, 42) ORDER BY id"), [
      { id: 13, estatus: "pendiente" },
      { id: 26, estatus: "pendiente" },
      { id: 42, estatus: "pendiente" },
    ]);
    assert.deepEqual(await rows("SELECT a.estatus, o.error_message FROM fila_llm_anahuac a JOIN fila_llm_outcome o ON o.prompt_id = a.id WHERE a.id = 43"), [
      { estatus: "error", error_message: "cancelled by operator" },
    ]);
    assert.deepEqual(
      await rows("SELECT run_at = timestamptz '2026-11-27 03:00 America/Mexico_City' AS rescheduled FROM fila_llm_jobs WHERE prompt_id = 44"),
      [{ rescheduled: true }],
    );
    assert.deepEqual(await rows("SELECT attempts = max_attempts AS failed, last_error FROM fila_llm_jobs WHERE prompt_id = 45"), [
      { failed: true, last_error: "held by operator" },
    ]);
    assert.deepEqual(await rows("SELECT locked_by FROM fila_llm_jobs WHERE prompt_id = 46"), [{ locked_by: null }]);
    assert.deepEqual(await rows("SELECT paused, open_until FROM fila_llm_control"), [{ paused: false, open_until: null }]);
  });

  test("it shows every steering function, graphile-worker's admin functions and views, and has its Least privilege section", () => {
    for (const name of [
      "fila_llm_retry(", "fila_llm_retry_errors(", "fila_llm_pause()", "fila_llm_resume()", "fila_llm_open_now(", "fila_llm_cancel(",
      "graphile_worker.reschedule_jobs(", "graphile_worker.permanently_fail_jobs(", "graphile_worker.force_unlock_workers(",
      "FROM graphile_worker.jobs", "FROM fila_llm_jobs",
    ]) {
      assert.ok(sqlBlocks(RUNBOOK).some((b) => b.run && b.sql.includes(name)), `no runnable example of ${name}`);
    }
    assert.match(RUNBOOK, /^## Least privilege$/m);
  });
});
