/**
 * Is the queue open at instant T? The one rule, shared by the gate (which
 * lets prompts start) and the status screen (which tells operators why they
 * do or do not): inside the window (window.ts) or forced open by `open-now`,
 * and not paused. A pause wins over everything.
 */
import type { ControlState } from "./sql/control";
import { isWindowOpen, type WindowSpec } from "./window";

export interface QueueState {
  open: boolean;
  /** The schedule alone: is it inside the window? */
  inWindow: boolean;
  paused: boolean;
  /** Forced open until this instant (open-now), if that is still ahead. */
  forcedOpenUntil: Date | null;
}

/** The queue's state at `now` under this window and the operators' steering. */
export function queueState(now: Date, window: WindowSpec, control: ControlState): QueueState {
  const inWindow = isWindowOpen(now, window);
  const forcedOpenUntil = control.openUntil !== null && control.openUntil > now ? control.openUntil : null;
  return { open: !control.paused && (inWindow || forcedOpenUntil !== null), inWindow, paused: control.paused, forcedOpenUntil };
}
