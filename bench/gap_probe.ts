/**
 * A preload for the worker process that timestamps what happens between two LLM requests:
 *
 *   node -r ./dist/bench/gap_probe.js dist/src/cli.js start     (env: GAP_PROBE_FILE)
 *
 * It wraps pg's Client#query (each query, labelled), undici's Pool#request (the LLM call),
 * process.stdout.write (the log line) and the token counter's count(), and on exit writes every
 * span as JSON to GAP_PROBE_FILE.
 * bench/gap_breakdown.ts lines them up with the LLM server's request times.
 */
import { writeFileSync } from "node:fs";
import { Client } from "pg";
import { Pool as HttpPool } from "undici";
import { getTokenCounter } from "../src/tokens/index";

export interface Span {
  label: string;
  start: number;
  end: number;
}

const spans: Span[] = [];
const now = () => performance.timeOrigin + performance.now();

/** A short, stable name for a query: graphile-worker's by what they do, ours by their first words. */
function labelFor(text: string): string {
  const t = text.replace(/\s+/g, " ").trim();
  if (/^with j as \( select jobs\.job_queue_id/.test(t)) return "graphile-worker getJob";
  if (/^delete from .*_private_jobs as jobs where id = \$1/.test(t)) return "graphile-worker completeJob";
  if (/^WITH done AS \( UPDATE fila_llm_anahuac/.test(t)) return "recordSuccess";
  if (/^SELECT id, prompt FROM fila_llm_anahuac/.test(t)) return "loadPendingPrompt";
  if (/^SELECT paused, open_until FROM fila_llm_control/.test(t)) return "readControl";
  return "other query: " + t.slice(0, 40);
}

const query = Client.prototype.query as (...args: unknown[]) => unknown;
Client.prototype.query = function (this: Client, ...args: unknown[]) {
  const first = args[0] as string | { text?: string };
  const text = typeof first === "string" ? first : first?.text;
  const start = now();
  const result = query.apply(this, args);
  if (text && result && typeof (result as Promise<unknown>).then === "function") {
    const span = { label: labelFor(text), start, end: 0 };
    spans.push(span);
    const done = () => {
      span.end = now();
    };
    (result as Promise<unknown>).then(done, done);
  }
  return result;
} as typeof Client.prototype.query;

// The LLM call as the worker sees it: from undici's request() to the response headers.
const request = HttpPool.prototype.request as (...args: unknown[]) => Promise<unknown>;
HttpPool.prototype.request = function (this: HttpPool, ...args: unknown[]) {
  const span = { label: "LLM call (client side, to response headers)", start: now(), end: 0 };
  spans.push(span);
  const result = request.apply(this, args);
  const done = () => {
    span.end = now();
  };
  result.then(done, done);
  return result;
} as typeof HttpPool.prototype.request;

const write = process.stdout.write.bind(process.stdout) as (...args: unknown[]) => boolean;
process.stdout.write = ((...args: unknown[]) => {
  const start = now();
  const ok = write(...args);
  spans.push({ label: "log line (stdout write)", start, end: now() });
  return ok;
}) as typeof process.stdout.write;

const counter = getTokenCounter(process.env.TOKEN_ENCODING ?? "cl100k_base");
const count = counter.count.bind(counter);
(counter as { count: (text: string) => Promise<number> }).count = async (text: string) => {
  const start = now();
  const n = await count(text);
  spans.push({ label: "token count", start, end: now() });
  return n;
};

process.on("exit", () => {
  if (process.env.GAP_PROBE_FILE) writeFileSync(process.env.GAP_PROBE_FILE, JSON.stringify(spans));
});
