/**
 * The one place that reads the environment. Everything is validated at
 * start-up, so a bad setting stops the process when pm2 starts it, not at 01:00.
 */
import { config as loadDotenv } from "dotenv";
import type { Level, LogFormat } from "./log";
import { isKnownEncoding } from "./tokens/encodings";
import { parseClockTime, type WindowSpec } from "./window";

export type LlmProvider = "ollama" | "openai";

export interface Config {
  /** Unset means: run on the embedded PostgreSQL kept in `.data/`. */
  databaseUrl: string | null;
  llm: {
    provider: LlmProvider;
    /** The servers, one lane each: the same provider and model behind every URL. */
    baseUrls: string[];
    /** How many requests one server may have in flight (a server that batches may take more than 1). */
    concurrencyPerServer: number;
    model: string;
    apiKey: string | null;
    systemPrompt: string | null;
    temperature: number | null;
    maxTokens: number | null;
    timeoutSeconds: number;
    /** A stream that has started and then sends nothing for this long is cut. */
    stallSeconds: number;
    /** Cut an answer whose tail has become a loop (src/llm/repetition_guard.ts). */
    repetitionGuard: boolean;
    maxAttempts: number;
    retryDelaySeconds: number;
    maxResponseBytes: number;
    outageMaxBackoffSeconds: number;
    /** The context to ask for (Ollama's num_ctx), the same on every request; null: the server's default. */
    contextTokens: number | null;
    /** How long Ollama keeps the model loaded after a request, in seconds; -1: for ever. */
    keepAliveSeconds: number;
    /** Unload the model (Ollama) when the window closes or the queue empties inside it. */
    releaseAtEnd: boolean;
  };
  tokenEncoding: string;
  window: WindowSpec;
  /** What happens to the request in flight when the window ends: it may finish, or it is cancelled. */
  windowEndPolicy: "finish" | "cancel";
  shutdownGraceSeconds: number;
  pollIntervalMs: number;
  logFormat: LogFormat;
  logLevel: Level;
}

/** Every default in one object; `.env.example` mirrors it. */
export const DEFAULTS = {
  LLM_PROVIDER: "ollama",
  OLLAMA_BASE_URL: "http://127.0.0.1:11434",
  // vLLM's and llama-server's usual port; OpenAI-style base URLs end in /v1.
  OPENAI_BASE_URL: "http://127.0.0.1:8000/v1",
  OLLAMA_MODEL: "llama3.2",
  // A long generation on a small GPU can take many minutes; the night is 5 h.
  LLM_TIMEOUT_SECONDS: 900,
  // Long enough for a slow GPU between two tokens, or a server that pauses to
  // shift its context; short against a night. Capped at half the timeout
  // when LLM_TIMEOUT_SECONDS is shorter, so that a stall is still told from a
  // generation that runs out of time.
  LLM_STALL_SECONDS: 120,
  LLM_REPETITION_GUARD: "on",
  LLM_MAX_ATTEMPTS: 5,
  // Long enough for the next prompts to go first: a success between two
  // failures is what tells a bad prompt from a bad server.
  LLM_RETRY_DELAY_SECONDS: 5,
  // Far above any real answer, far below what would hurt the worker's memory.
  LLM_MAX_RESPONSE_BYTES: 8 * 1024 * 1024,
  LLM_OUTAGE_MAX_BACKOFF_SECONDS: 60,
  // One request at a time is what a single self-hosted server answers fastest;
  // a server that batches (vLLM, TGI, llama-server --parallel) may be given more.
  LLM_CONCURRENCY_PER_SERVER: 1,
  // Ollama unloads a model 5 minutes after its last request by default; a
  // night's prompts and an outage's back-off (60 s) must not see it unload,
  // and the worker unloads it itself when the window ends.
  LLM_KEEP_ALIVE: "30m",
  LLM_RELEASE_AT_END: "true",
  WINDOW_END_POLICY: "finish",
  TOKEN_ENCODING: "cl100k_base",
  WINDOW_START: "01:00",
  WINDOW_END: "06:00",
  SHUTDOWN_GRACE_SECONDS: 30,
  // Only matters when no NOTIFY arrives: the window opening, a retry's run_at.
  WORKER_POLL_INTERVAL_MS: 1000,
  LOG_FORMAT: "text",
  LOG_LEVEL: "info",
} as const;

/** A setting that is missing or malformed; the message names the variable. */
export class ConfigError extends Error {
  constructor(variable: string, expected: string, got: string | undefined) {
    super(`${variable} must be ${expected} (got ${got === undefined ? "nothing" : JSON.stringify(got)})`);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

function text(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const value = text(env, name) ?? fallback;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(name, `one of ${allowed.join(", ")}`, env[name]);
  }
  return value as T;
}

function number(env: Env, name: string, opts: { min: number; max: number; integer?: boolean }): number | undefined {
  const raw = text(env, name);
  if (raw === undefined) return undefined;
  const value = Number(raw);
  const kind = opts.integer ? "an integer" : "a number";
  if (!Number.isFinite(value) || (opts.integer && !Number.isInteger(value)) || value < opts.min || value > opts.max) {
    throw new ConfigError(name, `${kind} from ${opts.min} to ${opts.max}`, env[name]);
  }
  return value;
}

// A machine's GPUs, or a rack's: far above any real list, far below a mistake's.
const MAX_SERVERS = 64;

/** A comma-separated list of http(s) URLs, each one server; no two the same. */
function httpUrls(env: Env, name: string, fallback: string): string[] {
  const raw = text(env, name) ?? fallback;
  const expected = "an http:// or https:// URL, or several separated by commas (one per server)";
  // What an error quotes: the value without any user:password@ it may hold.
  const shown = env[name]?.replace(/\/\/[^/@]*@/g, "//***@");
  const urls = raw.split(",").map((part) => part.trim().replace(/\/+$/, ""));
  for (const part of urls) {
    let url: URL;
    try {
      url = new URL(part);
    } catch {
      throw new ConfigError(name, expected, shown);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new ConfigError(name, expected, shown);
  }
  // Each once by the name its lane goes by (no credentials; host and port as the URL standard writes them):
  // two spellings of one server would be two lanes, and that server would get twice its requests.
  const names = urls.map(serverName);
  if (new Set(names).size !== names.length) throw new ConfigError(name, `${expected}, each server once`, shown);
  if (urls.length > MAX_SERVERS) throw new ConfigError(name, `at most ${MAX_SERVERS} servers`, shown);
  return urls;
}

function timeZone(env: Env, name: string): string {
  const zone = text(env, name) ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
  } catch {
    throw new ConfigError(name, "an IANA time zone such as America/Mexico_City", env[name]);
  }
  return zone;
}

/** A duration as Ollama's keep_alive reads it: 90, 90s, 30m, 1h, or -1 for ever; returns seconds. */
function duration(env: Env, name: string, fallback: string): number {
  const raw = text(env, name) ?? fallback;
  const match = /^(-1|\d+(?:\.\d+)?)(s|m|h)?$/.exec(raw);
  if (!match || (match[1] === "-1" && match[2] !== undefined)) {
    throw new ConfigError(name, "a duration such as 30m, 1h or 600 (seconds), or -1 for ever", env[name]);
  }
  if (match[1] === "-1") return -1;
  return Number(match[1]) * { s: 1, m: 60, h: 3600 }[match[2] ?? "s"]!;
}

function clockTime(env: Env, name: string, fallback: string): number {
  const raw = text(env, name) ?? fallback;
  const minutes = parseClockTime(raw);
  if (minutes === null) throw new ConfigError(name, "HH:MM in 24-hour time, 00:00 to 24:00", env[name]);
  return minutes;
}

/** Validates an environment into a Config; throws ConfigError naming the first bad variable. */
export function parseConfig(env: Env): Config {
  const provider = oneOf(env, "LLM_PROVIDER", ["ollama", "openai"] as const, DEFAULTS.LLM_PROVIDER);
  const baseUrls = httpUrls(env, "LLM_BASE_URL", provider === "ollama" ? DEFAULTS.OLLAMA_BASE_URL : DEFAULTS.OPENAI_BASE_URL);
  const model = text(env, "LLM_MODEL") ?? (provider === "ollama" ? DEFAULTS.OLLAMA_MODEL : undefined);
  if (model === undefined) {
    throw new ConfigError("LLM_MODEL", "the model name the server serves (required when LLM_PROVIDER=openai)", env.LLM_MODEL);
  }
  const tokenEncoding = text(env, "TOKEN_ENCODING") ?? DEFAULTS.TOKEN_ENCODING;
  if (!isKnownEncoding(tokenEncoding)) {
    throw new ConfigError("TOKEN_ENCODING", "a js-tiktoken encoding such as cl100k_base or o200k_base", env.TOKEN_ENCODING);
  }
  const startMinutes = clockTime(env, "WINDOW_START", DEFAULTS.WINDOW_START);
  const endMinutes = clockTime(env, "WINDOW_END", DEFAULTS.WINDOW_END);
  if (startMinutes === 24 * 60) throw new ConfigError("WINDOW_START", "HH:MM from 00:00 to 23:59", env.WINDOW_START);
  if (startMinutes === endMinutes) {
    throw new ConfigError("WINDOW_END", `a time different from WINDOW_START (use 00:00 and 24:00 for always open)`, env.WINDOW_END);
  }
  const timeoutSeconds = number(env, "LLM_TIMEOUT_SECONDS", { min: 1, max: 24 * 3600 }) ?? DEFAULTS.LLM_TIMEOUT_SECONDS;
  const stallSeconds = number(env, "LLM_STALL_SECONDS", { min: 1, max: 24 * 3600 }) ?? Math.min(DEFAULTS.LLM_STALL_SECONDS, timeoutSeconds / 2);
  if (stallSeconds >= timeoutSeconds) {
    throw new ConfigError("LLM_STALL_SECONDS", `less than LLM_TIMEOUT_SECONDS (${timeoutSeconds} s), or the whole call would time out first`, env.LLM_STALL_SECONDS);
  }
  const outageMaxBackoffSeconds =
    number(env, "LLM_OUTAGE_MAX_BACKOFF_SECONDS", { min: 1, max: 3600 }) ?? DEFAULTS.LLM_OUTAGE_MAX_BACKOFF_SECONDS;
  const keepAliveSeconds = duration(env, "LLM_KEEP_ALIVE", DEFAULTS.LLM_KEEP_ALIVE);
  if (keepAliveSeconds !== -1 && keepAliveSeconds <= outageMaxBackoffSeconds) {
    throw new ConfigError(
      "LLM_KEEP_ALIVE",
      `longer than LLM_OUTAGE_MAX_BACKOFF_SECONDS (${outageMaxBackoffSeconds} s), or Ollama unloads the model between two tries`,
      env.LLM_KEEP_ALIVE,
    );
  }
  const databaseUrl = text(env, "DATABASE_URL") ?? null;
  if (databaseUrl !== null && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    // Never echo the value: it may hold a password.
    throw new ConfigError("DATABASE_URL", "a postgres:// or postgresql:// connection string", "<hidden>");
  }

  return {
    databaseUrl,
    llm: {
      provider,
      baseUrls,
      concurrencyPerServer: number(env, "LLM_CONCURRENCY_PER_SERVER", { min: 1, max: 64, integer: true }) ?? DEFAULTS.LLM_CONCURRENCY_PER_SERVER,
      model,
      apiKey: text(env, "LLM_API_KEY") ?? null,
      systemPrompt: text(env, "LLM_SYSTEM_PROMPT") ?? null,
      temperature: number(env, "LLM_TEMPERATURE", { min: 0, max: 2 }) ?? null,
      maxTokens: number(env, "LLM_MAX_TOKENS", { min: 1, max: 10_000_000, integer: true }) ?? null,
      timeoutSeconds,
      stallSeconds,
      repetitionGuard: oneOf(env, "LLM_REPETITION_GUARD", ["on", "off"] as const, DEFAULTS.LLM_REPETITION_GUARD) === "on",
      maxAttempts: number(env, "LLM_MAX_ATTEMPTS", { min: 1, max: 100, integer: true }) ?? DEFAULTS.LLM_MAX_ATTEMPTS,
      retryDelaySeconds: number(env, "LLM_RETRY_DELAY_SECONDS", { min: 0, max: 60 }) ?? DEFAULTS.LLM_RETRY_DELAY_SECONDS,
      maxResponseBytes:
        number(env, "LLM_MAX_RESPONSE_BYTES", { min: 1024, max: 1024 ** 3, integer: true }) ?? DEFAULTS.LLM_MAX_RESPONSE_BYTES,
      outageMaxBackoffSeconds,
      contextTokens: number(env, "LLM_CONTEXT_TOKENS", { min: 256, max: 10_000_000, integer: true }) ?? null,
      keepAliveSeconds,
      releaseAtEnd: oneOf(env, "LLM_RELEASE_AT_END", ["true", "false"] as const, DEFAULTS.LLM_RELEASE_AT_END) === "true",
    },
    tokenEncoding,
    window: { startMinutes, endMinutes, timeZone: timeZone(env, "WINDOW_TZ") },
    windowEndPolicy: oneOf(env, "WINDOW_END_POLICY", ["finish", "cancel"] as const, DEFAULTS.WINDOW_END_POLICY),
    shutdownGraceSeconds: number(env, "SHUTDOWN_GRACE_SECONDS", { min: 0, max: 3600 }) ?? DEFAULTS.SHUTDOWN_GRACE_SECONDS,
    pollIntervalMs:
      number(env, "WORKER_POLL_INTERVAL_MS", { min: 50, max: 60_000, integer: true }) ?? DEFAULTS.WORKER_POLL_INTERVAL_MS,
    logFormat: oneOf(env, "LOG_FORMAT", ["text", "json"] as const, DEFAULTS.LOG_FORMAT),
    logLevel: oneOf(env, "LOG_LEVEL", ["debug", "info", "warn", "error"] as const, DEFAULTS.LOG_LEVEL),
  };
}

/** Reads `.env` (without overriding real environment variables) and validates it. */
export function loadConfig(): Config {
  loadDotenv({ quiet: true });
  return parseConfig(process.env);
}

/** Removes the password from a connection string, for logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "<unparseable URL>";
  }
}

/** An LLM server's URL without credentials: its name in logs, lane locks and fila_llm_outcome.server. */
export function serverName(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = "";
    parsed.password = "";
    return parsed.toString();
  } catch {
    return "<unparseable URL>";
  }
}

/** The config as it may be logged: secrets masked. */
export function describeConfig(config: Config): Record<string, unknown> {
  return {
    ...config,
    databaseUrl: config.databaseUrl === null ? "(embedded PostgreSQL)" : redactUrl(config.databaseUrl),
    llm: { ...config.llm, baseUrls: config.llm.baseUrls.map(redactUrl), apiKey: config.llm.apiKey === null ? null : "***" },
  };
}
