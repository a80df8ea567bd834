/**
 * What the fault tests need beyond test/support: a pm2 of their own (never
 * the machine's), a PostgreSQL of their own that they may restart, and a
 * record of every answer written, to prove none was written twice.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Pool } from "pg";
import { createPool } from "../../src/db";
import { embeddedUrl, startEmbeddedPostgres, type EmbeddedPostgres } from "../../src/embedded_postgres";
import { projectRoot } from "../../src/paths";
import type { Queryable } from "../../src/sql/queryable";

const PM2_BIN = path.join(projectRoot, "node_modules", "pm2", "bin", "pm2");

/** A TCP port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The real pm2 from node_modules, with its own PM2_HOME in a temporary folder,
 * so the tests never see or touch the machine's pm2 daemon. `kill()` ends the
 * daemon and removes the folder.
 */
export class Pm2 {
  readonly home = mkdtempSync(path.join(os.tmpdir(), "fila-llm-pm2-"));

  /** Runs one pm2 command; resolves with its output, rejects if it fails. */
  cli(...args: string[]): Promise<string> {
    const child = spawn(process.execPath, [PM2_BIN, ...args], {
      cwd: projectRoot,
      // Nothing of the test runner's environment: the daemon passes its own on to the apps.
      env: { PATH: process.env.PATH ?? "", HOME: this.home, PM2_HOME: this.home },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (c) => (output += c));
    child.stderr.on("data", (c) => (output += c));
    return new Promise((resolve, reject) =>
      child.on("exit", (code) => (code === 0 ? resolve(output) : reject(new Error(`pm2 ${args.join(" ")} exited ${code}:\n${output}`)))),
    );
  }

  /**
   * `pm2 start` of the project's own ecosystem.config.cjs, changing only the
   * app's name, its environment and where its logs go.
   */
  async start(name: string, env: Record<string, string>): Promise<void> {
    const file = path.join(this.home, `${name}.config.cjs`);
    writeFileSync(
      file,
      `const base = require(${JSON.stringify(path.join(projectRoot, "ecosystem.config.cjs"))}).apps[0];
module.exports = { apps: [{ ...base, name: ${JSON.stringify(name)}, env: ${JSON.stringify(env)},
  out_file: ${JSON.stringify(this.outLog(name))}, error_file: ${JSON.stringify(this.errLog(name))} }] };
`,
    );
    await this.cli("start", file);
  }

  outLog(name: string): string {
    return path.join(this.home, `${name}.out.log`);
  }

  errLog(name: string): string {
    return path.join(this.home, `${name}.err.log`);
  }

  /** Every line the app wrote, stdout and stderr. */
  logs(name: string): string[] {
    return [this.outLog(name), this.errLog(name)]
      .filter((f) => existsSync(f))
      .flatMap((f) => readFileSync(f, "utf8").split("\n"))
      .filter(Boolean);
  }

  /** The daemon's own log: starts, exits with their codes, restarts. */
  daemonLog(): string {
    const file = path.join(this.home, "pm2.log");
    return existsSync(file) ? readFileSync(file, "utf8") : "";
  }

  /** The app's current pid, from pm2's pid file; null while it is down. */
  pid(name: string): number | null {
    const dir = path.join(this.home, "pids");
    if (!existsSync(dir)) return null;
    const file = readdirSync(dir).find((f) => f.startsWith(`${name}-`) && f.endsWith(".pid"));
    if (!file) return null;
    try {
      const pid = Number(readFileSync(path.join(dir, file), "utf8").trim());
      return pid > 0 ? pid : null;
    } catch {
      return null;
    }
  }

  /** Ends the daemon and its apps, and removes PM2_HOME. */
  async kill(): Promise<void> {
    await this.cli("kill").catch(() => {});
    rmSync(this.home, { recursive: true, force: true });
  }
}

/** A PostgreSQL server of the test's own, which it may stop and start again. */
export class RestartableDatabase {
  private server: EmbeddedPostgres | null = null;
  private readonly dir = mkdtempSync(path.join(os.tmpdir(), "fila-llm-restart-pg-"));
  pool: Pool | null = null;

  private constructor(readonly port: number) {}

  static async start(): Promise<RestartableDatabase> {
    const db = new RestartableDatabase(await freePort());
    await db.startServer();
    db.pool = createPool(db.url, 4);
    return db;
  }

  get url(): string {
    return this.server?.connectionString ?? embeddedUrl(this.port);
  }

  /**
   * Fast shutdown, as `pg_ctlcluster … restart` does: every session is
   * terminated. With `crash`, an immediate shutdown, as a crash of the server
   * or its machine: commits that were not yet on disk are lost.
   */
  async stopServer(options: { crash?: boolean } = {}): Promise<void> {
    await this.server?.stop({ immediate: options.crash === true });
    this.server = null;
  }

  async startServer(): Promise<void> {
    this.server = await startEmbeddedPostgres(this.dir, this.port);
  }

  /** Stops the server and removes its files. */
  async destroy(): Promise<void> {
    await this.pool?.end().catch(() => {});
    await this.stopServer().catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Records every answer written to fila_llm_anahuac in a side table, so a test
 * can tell an answer written once from one overwritten by a second run. Test
 * databases only: the legacy table itself never changes.
 */
export async function recordAnswerWrites(db: Queryable): Promise<void> {
  await db.query(`
    CREATE TABLE test_answer_writes (id INT, respuesta TEXT, written_at TIMESTAMPTZ DEFAULT clock_timestamp());
    CREATE FUNCTION test_record_answer() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO test_answer_writes (id, respuesta) VALUES (NEW.id, NEW.respuesta);
      RETURN NULL;
    END $$;
    CREATE TRIGGER test_record_answer AFTER UPDATE OF respuesta ON fila_llm_anahuac
      FOR EACH ROW WHEN (NEW.respuesta IS DISTINCT FROM OLD.respuesta) EXECUTE FUNCTION test_record_answer();`);
}

/** Ids whose answer was written more than once. */
export async function answersWrittenTwice(db: Queryable): Promise<number[]> {
  const { rows } = await db.query("SELECT id FROM test_answer_writes GROUP BY id HAVING count(*) > 1 ORDER BY id");
  return rows.map((r) => r.id);
}
