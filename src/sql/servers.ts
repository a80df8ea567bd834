/** Queries on fila_llm_servers: what the worker last saw of each LLM server, and who runs its lane (migrations/0013, 0016). */
import type { Queryable } from "./queryable";

export type ServerState = "answering" | "outage" | "misconfigured" | "loading" | "released" | "probing";

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

/** Records that this graphile-worker pool now runs the server's lane (its process took the lane lock). */
export async function recordLaneHolder(db: Queryable, server: string, poolId: string): Promise<void> {
  await db.query(
    `INSERT INTO fila_llm_servers AS s (server, state, holder_pool, holder_since) VALUES ($1, 'answering', $2, now())
     ON CONFLICT (server) DO UPDATE SET holder_pool = excluded.holder_pool, holder_since = now()`,
    [server, poolId],
  );
}

export interface ServerStatus {
  server: string;
  state: ServerState;
  since: Date;
  message: string | null;
  lastLoadAt: Date | null;
  lastLoadSeconds: number | null;
  /** The graphile-worker pool that runs its lane now, and since when. */
  holderPool: string | null;
  holderSince: Date | null;
}

/** Every server the worker has seen, by URL. */
export async function readServerStates(db: Queryable): Promise<ServerStatus[]> {
  const { rows } = await db.query(
    `SELECT server, state, since, message, last_load_at, last_load_seconds::float8 AS last_load_seconds, holder_pool, holder_since
       FROM fila_llm_servers ORDER BY server`,
  );
  return rows.map((r) => ({
    server: r.server,
    state: r.state,
    since: r.since,
    message: r.message,
    lastLoadAt: r.last_load_at,
    lastLoadSeconds: r.last_load_seconds,
    holderPool: r.holder_pool,
    holderSince: r.holder_since,
  }));
}
