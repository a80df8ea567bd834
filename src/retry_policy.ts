/**
 * How long to wait before trying again. Both are capped at about a minute so
 * that a retry never pushes a prompt past the night, which graphile-worker's
 * own exp(attempt) backoff (up to ~6 h) would.
 */

const PROMPT_RETRY_MAX_SECONDS = 60;

/**
 * Delay before retrying a prompt that has failed `failures` times (1, 2, …):
 * base, 2×base, 4×base, … up to 60 s (with the default 5 s: 5, 10, 20, 40, 60).
 */
export function promptRetryDelaySeconds(failures: number, baseSeconds: number): number {
  return Math.min(PROMPT_RETRY_MAX_SECONDS, baseSeconds * 2 ** Math.max(0, failures - 1));
}

/** Pause after the `consecutive`-th outage failure in a row: 1, 2, 4, … s up to `maxSeconds`. */
export function outageBackoffSeconds(consecutive: number, maxSeconds: number): number {
  return Math.min(maxSeconds, 2 ** Math.max(0, consecutive - 1));
}
