/**
 * What the tasks need from the running process: graphile-worker calls a task
 * with only its payload and helpers, so the worker registers these here once.
 */
import type { Pool } from "pg";
import type { Config } from "./config";
import type { Gate } from "./gate";
import type { Session } from "./session";
import type { TokenCounter } from "./tokens/index";

/** What every task shares; what belongs to one LLM server is its lane's (src/lane.ts), which its runner's process_prompt is built with. */
export interface AppContext {
  config: Config;
  /** The durable pool: a prompt's row and outcome, and its job's return to the queue, are written here. */
  pool: Pool;
  gate: Gate;
  session: Session;
  tokens: TokenCounter;
}

let current: AppContext | null = null;

export function setAppContext(context: AppContext | null): void {
  current = context;
}

/** The running worker's context; throws if no worker started in this process. */
export function appContext(): AppContext {
  if (!current) throw new Error("fila-llm: no worker is running in this process (setAppContext was not called)");
  return current;
}
