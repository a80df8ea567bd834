import type { QueryResult } from "pg";

/** A pg Pool, Client or PoolClient: anything a query can run on. */
export interface Queryable {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  query(text: string, values?: unknown[]): Promise<QueryResult<any>>;
}
