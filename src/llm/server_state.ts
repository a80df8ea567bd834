/**
 * Keeps fila_llm_servers up to date with what this worker sees of its LLM
 * server (the outage breaker's changes of state, the model's loads and
 * releases), so that `fila-llm status` can say why nothing runs. Writes only
 * on a change, never per prompt, and never holds a prompt up: a failed write
 * is logged at debug and the next change writes again.
 */
import type { Queryable } from "../sql/queryable";
import { recordLaneHolder, recordModelLoad, recordServerState, type ServerState } from "../sql/servers";
import { logger } from "../log";
import type { ReportedState } from "./outage_breaker";
import type { ResidencyEvents } from "./model_residency";

const log = logger("llm");

const FOR_BREAKER: Record<ReportedState, ServerState> = { up: "answering", unavailable: "outage", misconfigured: "misconfigured", probing: "probing" };

export interface ServerStateRecorder {
  breakerChanged(state: ReportedState, reason: string | null): void;
  residency: ResidencyEvents;
  /** This process took the lane: its pool runs the server's prompts now. */
  laneTaken(poolId: string): void;
}

export function serverStateRecorder(db: Queryable, server: string): ServerStateRecorder {
  // One write at a time, in order: a later state must not be overwritten by an earlier one.
  let last: Promise<void> = Promise.resolve();
  const write = (what: string, query: () => Promise<void>) => {
    last = last.then(query).catch((error) => log.debug(`could not record the LLM server's state (${what})`, { error: (error as Error).message }));
  };
  return {
    breakerChanged: (state, reason) => write(state, () => recordServerState(db, server, FOR_BREAKER[state], reason)),
    residency: {
      loading: () => write("loading", () => recordServerState(db, server, "loading", null)),
      loaded: (seconds) => write("loaded", () => recordModelLoad(db, server, seconds)),
      inUse: () => write("in use", () => recordServerState(db, server, "answering", null)),
      released: (reason) => write("released", () => recordServerState(db, server, "released", reason)),
    },
    laneTaken: (poolId) => write("lane taken", () => recordLaneHolder(db, server, poolId)),
  };
}
