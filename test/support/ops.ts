/** Seeding finished nights, and running the operators' CLI, for the ops tests. */
import { execFile } from "node:child_process";
import os from "node:os";
import path from "node:path";
import type { Pool } from "pg";
import { projectRoot } from "../../src/paths";

export interface SeededRun {
  estatus: "listo" | "error" | "pendiente";
  /** When it finished (fecha_out), as an instant; written as now() would write it in the session's TimeZone. */
  finishedAt?: string;
  seconds?: number;
  tokensIn?: number;
  tokensOut?: number;
  /** fila_llm_outcome.error_message; for 'error' rows (none: a legacy row without an outcome). */
  message?: string;
  /** fila_llm_outcome.attempts, > 1 for a prompt that was retried; default 1 where there is an outcome row. */
  attempts?: number;
  /** fila_llm_outcome.finish_reason: "stop", "length", "repetition", … */
  finishReason?: string;
  /** What the server reported: its output tokens, and its timings in seconds. */
  serverTokensOut?: number;
  loadSeconds?: number;
  promptEvalSeconds?: number;
  evalSeconds?: number;
  /** fila_llm_outcome.server: the lane that ran it. */
  server?: string;
  /** fecha_in, as an instant; default now(). */
  insertedAt?: string;
  prompt?: string;
}

/** Inserts one row as the worker (or the old system) would have left it; returns its id. */
export async function seedRun(pool: Pool, run: SeededRun): Promise<number> {
  return (await seedRuns(pool, [run]))[0];
}

/**
 * Inserts many such rows in a few statements (a night of a thousand prompts
 * in well under a second); returns their ids, in the order given. The ids are
 * taken from the table's sequence first, so that each outcome row is sure to
 * go to its own prompt.
 */
export async function seedRuns(pool: Pool, runs: SeededRun[]): Promise<number[]> {
  if (runs.length === 0) return [];
  const ids: number[] = (
    await pool.query(
      `SELECT nextval(pg_get_serial_sequence('fila_llm_anahuac', 'id'))::int AS id FROM generate_series(1, $1) ORDER BY 1`,
      [runs.length],
    )
  ).rows.map((r) => r.id);
  const column = <T>(pick: (run: SeededRun) => T) => runs.map(pick);
  await pool.query(
    `INSERT INTO fila_llm_anahuac (id, prompt, respuesta, fecha_in, fecha_out, tokens_in, tokens_out, estatus, tiempo_ejecucion)
     SELECT id, prompt, respuesta,
            coalesce(inserted_at, now()) AT TIME ZONE current_setting('TimeZone'),
            finished_at AT TIME ZONE current_setting('TimeZone'), tokens_in, tokens_out, estatus, seconds
       FROM unnest($1::int[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::int[], $7::int[], $8::text[], $9::numeric[])
            AS r(id, prompt, respuesta, inserted_at, finished_at, tokens_in, tokens_out, estatus, seconds)
      ORDER BY id`,
    [
      ids,
      column((r) => r.prompt ?? `seeded ${r.estatus}`),
      column((r) => (r.estatus === "listo" ? "seeded answer" : null)),
      column((r) => r.insertedAt ?? null),
      column((r) => r.finishedAt ?? null),
      column((r) => r.tokensIn ?? null),
      column((r) => r.tokensOut ?? null),
      column((r) => r.estatus),
      column((r) => r.seconds ?? null),
    ],
  );
  const outcomes = runs.flatMap((r, i) =>
    r.message !== undefined || r.attempts !== undefined || r.finishReason !== undefined || r.evalSeconds !== undefined || r.server !== undefined
      ? [{ id: ids[i], run: r }]
      : [],
  );
  if (outcomes.length > 0) {
    await pool.query(
      `INSERT INTO fila_llm_outcome (prompt_id, estatus, error_message, attempts, finish_reason, server_tokens_out,
                                     load_seconds, prompt_eval_seconds, eval_seconds, server, finished_at)
       SELECT prompt_id, estatus, error_message, attempts, finish_reason, server_tokens_out, load_seconds, prompt_eval_seconds, eval_seconds, server, now()
         FROM unnest($1::int[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[], $7::numeric[], $8::numeric[], $9::numeric[], $10::text[])
              AS o(prompt_id, estatus, error_message, attempts, finish_reason, server_tokens_out, load_seconds, prompt_eval_seconds, eval_seconds, server)`,
      [
        outcomes.map((o) => o.id),
        outcomes.map((o) => o.run.estatus),
        outcomes.map((o) => o.run.message ?? null),
        outcomes.map((o) => o.run.attempts ?? 1),
        outcomes.map((o) => o.run.finishReason ?? null),
        outcomes.map((o) => o.run.serverTokensOut ?? null),
        outcomes.map((o) => o.run.loadSeconds ?? null),
        outcomes.map((o) => o.run.promptEvalSeconds ?? null),
        outcomes.map((o) => o.run.evalSeconds ?? null),
        outcomes.map((o) => o.run.server ?? null),
      ],
    );
  }
  return ids;
}

/** Settings for the CLI against a test database. */
export function cliEnv(databaseUrl: string, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    LLM_MODEL: "test-model",
    WINDOW_START: "01:00",
    WINDOW_END: "06:00",
    WINDOW_TZ: "America/Mexico_City",
    ...overrides,
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node dist/src/cli.js ARGS` the way an operator would (from a folder
 * without a .env), of this project or of a copy of it in `projectDir`.
 */
export function runCli(args: string[], env: Record<string, string>, projectDir = projectRoot): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(projectDir, "dist", "src", "cli.js"), ...args],
      { cwd: os.tmpdir(), env: { PATH: process.env.PATH ?? "", ...env }, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
