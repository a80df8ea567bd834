/**
 * What may cancel an LLM call from outside: the shutdown grace running out,
 * this process losing the lane (another may start a prompt on that server at once), and,
 * with WINDOW_END_POLICY=cancel, the window's end (so that the GPU is free
 * at 06:00 sharp). A call cancelled this way is never the prompt's fault: it
 * keeps its place, with no attempt used.
 */
import type { Gate } from "./gate";

// How often the window's end is looked for during a call: the cancel comes within this of the end.
const WINDOW_END_CHECK_MS = 1_000;

export interface CallSignals {
  signal: AbortSignal;
  /** True if it was the window's end that cancelled the call. */
  readonly windowEnded: boolean;
  dispose(): void;
}

/**
 * One signal that aborts when any of these does, and at the window's end if
 * `gate` is given. Written out, rather than AbortSignal.any, so that nothing
 * stays attached to the session's long-lived signal after the call: the
 * worker runs 100,000s of prompts.
 */
export function callSignals(signals: AbortSignal[], gate: Gate | null): CallSignals {
  const controller = new AbortController();
  const abort = () => controller.abort();
  for (const s of signals) {
    if (s.aborted) controller.abort();
    else s.addEventListener("abort", abort, { once: true });
  }
  let windowEnded = false;
  // A pause lets the running prompt finish; only the window's closing cancels it.
  const watch = gate
    ? setInterval(() => {
        void gate.state().then((state) => {
          if (!state.open && !state.paused && !controller.signal.aborted) {
            windowEnded = true;
            controller.abort();
          }
        }, () => {});
      }, WINDOW_END_CHECK_MS)
    : null;
  return {
    signal: controller.signal,
    get windowEnded() {
      return windowEnded;
    },
    dispose() {
      if (watch) clearInterval(watch);
      signals.forEach((s) => s.removeEventListener("abort", abort));
    },
  };
}
