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
  /** fecha_in, as an instant; default now(). */
  insertedAt?: string;
  prompt?: string;
}

/** Inserts one row as the worker (or the old system) would have left it; returns its id. */
export async function seedRun(pool: Pool, run: SeededRun): Promise<number> {
  const { rows } = await pool.query(
    `INSERT INTO fila_llm_anahuac (prompt, respuesta, fecha_in, fecha_out, tokens_in, tokens_out, estatus, tiempo_ejecucion)
     VALUES ($1, $2, coalesce($3::timestamptz, now()) AT TIME ZONE current_setting('TimeZone'),
             $4::timestamptz AT TIME ZONE current_setting('TimeZone'), $5, $6, $7, $8)
     RETURNING id`,
    [
      run.prompt ?? `seeded ${run.estatus}`,
      run.estatus === "listo" ? "seeded answer" : null,
      run.insertedAt ?? null,
      run.finishedAt ?? null,
      run.tokensIn ?? null,
      run.tokensOut ?? null,
      run.estatus,
      run.seconds ?? null,
    ],
  );
  const id = rows[0].id;
  if (run.message !== undefined) {
    await pool.query(
      `INSERT INTO fila_llm_outcome (prompt_id, estatus, error_message, attempts, finished_at) VALUES ($1, $2, $3, 1, now())`,
      [id, run.estatus, run.message],
    );
  }
  return id;
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
