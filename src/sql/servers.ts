/** Queries on fila_llm_servers: what the worker last saw of each LLM server (migrations/0013). */
import type { Queryable } from "./queryable";

export type ServerState = "answering" | "outage" | "misconfigured" | "loading" | "released";

/** Records a change of state; `since` moves only when the state itself changes. */
export async function recordServerState(db: Queryable, server: string, state: ServerState, message: string | null): Promise<void> {
  await db.query(
    `INSERT INTO fila_llm_servers AS s (server, state, message) VALUES ($1, $2, $3)
     ON CONFLICT (server) DO UPDATE
       SET state = excluded.state, message = excluded.message, updated_at = now(),
           since = CASE WHEN s.state IS DISTINCT FROM excluded.state THEN now() ELSE s.since END`,
    [server, state, message],
  );
}

/** Records an explicit model load and how long it took. */
export async function recordModelLoad(db: Queryable, server: string, seconds: number): Promise<void> {
  await db.query(
    `INSERT INTO fila_llm_servers AS s (server, state, last_load_at, last_load_seconds) VALUES ($1, 'answering', now(), round($2::numeric, 2))
     ON CONFLICT (server) DO UPDATE
       SET state = 'answering', message = NULL, last_load_at = now(), last_load_seconds = excluded.last_load_seconds, updated_at = now(),
           since = CASE WHEN s.state = 'answering' THEN s.since ELSE now() END`,
    [server, seconds],
  );
}

export interface ServerStatus {
  server: string;
  state: ServerState;
  since: Date;
  message: string | null;
  lastLoadAt: Date | null;
  lastLoadSeconds: number | null;
}

/** Every server the worker has seen, by URL. */
export async function readServerStates(db: Queryable): Promise<ServerStatus[]> {
  const { rows } = await db.query(
    "SELECT server, state, since, message, last_load_at, last_load_seconds::float8 AS last_load_seconds FROM fila_llm_servers ORDER BY server",
  );
  return rows.map((r) => ({
    server: r.server,
    state: r.state,
    since: r.since,
    message: r.message,
    lastLoadAt: r.last_load_at,
    lastLoadSeconds: r.last_load_seconds,
  }));
}
