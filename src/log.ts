/**
 * One logger for the whole process: human-readable lines under `pm2 logs`,
 * or one JSON object per line with LOG_FORMAT=json. Every line passes through
 * a scrubber, so a registered secret can never reach the log.
 */
import type { Logger as GraphileLogger, LogLevel } from "graphile-worker";

export type Level = "debug" | "info" | "warn" | "error";
/** text: one human-readable line each (pm2 logs); json: one JSON object per line. */
export type LogFormat = "text" | "json";
export type Fields = Record<string, unknown>;

export interface Log {
  debug(message: string, fields?: Fields): void;
  info(message: string, fields?: Fields): void;
  warn(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
}

const secrets = new Set<string>();

/** Marks a value (a password, an API key) that must never appear in a log or stored message. */
export function registerSecret(value: string | null | undefined): void {
  // Very short values would blank out ordinary words; they are not real secrets.
  if (value && value.length >= 4) secrets.add(value);
}

/** Replaces every registered secret in a text with "***". */
export function scrub(text: string): string {
  let out = text;
  for (const secret of secrets) out = out.split(secret).join("***");
  return out;
}

let format: LogFormat = "text";
// Lines below this level are dropped; src/config.ts sets it from LOG_LEVEL at start-up.
let minLevel: Level = "info";
const LEVEL_ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };
// Tests read the log; they add a sink instead of patching the console.
const sinks = new Set<(line: string) => void>();

/** Sets the output format (from config) once at start-up. */
export function setLogFormat(value: LogFormat): void {
  format = value;
}

/** Adds a function that receives every line written; returns its remover. */
export function addLogSink(sink: (line: string) => void): () => void {
  sinks.add(sink);
  return () => sinks.delete(sink);
}

function formatValue(value: unknown): string {
  if (typeof value === "string") return /[\s"=]/.test(value) ? JSON.stringify(value) : value;
  return JSON.stringify(value) ?? String(value);
}

function write(level: Level, scope: string, message: string, fields: Fields = {}): void {
  if (LEVEL_ORDER[level] < LEVEL_ORDER[minLevel]) return;
  const time = new Date().toISOString();
  const line =
    format === "json"
      ? JSON.stringify({ time, level, scope, msg: message, ...fields })
      : `${time} ${level.toUpperCase().padEnd(5)} [${scope}] ${message}` +
        Object.entries(fields)
          .map(([k, v]) => ` ${k}=${formatValue(v)}`)
          .join("");
  const safe = scrub(line);
  for (const sink of sinks) sink(safe);
  (level === "error" || level === "warn" ? process.stderr : process.stdout).write(safe + "\n");
}

/** A logger whose lines are tagged with a scope such as "worker" or "prompt". */
export function logger(scope: string): Log {
  return {
    debug: (m, f) => write("debug", scope, m, f),
    info: (m, f) => write("info", scope, m, f),
    warn: (m, f) => write("warn", scope, m, f),
    error: (m, f) => write("error", scope, m, f),
  };
}

/** Sets the lowest level written (from config's LOG_LEVEL) once at start-up. */
export function setLogLevel(level: Level): void {
  minLevel = level;
}

/**
 * graphile-worker's logger, routed through ours. Its info lines (one per job
 * completed, at hundreds per second) become debug; warnings and errors stay.
 */
export function graphileLogger(): GraphileLogger {
  // Loaded here, not at the top: graphile-worker takes about half a second to
  // load, and the operators' commands, which log too, never need it.
  const { Logger } = require("graphile-worker") as typeof import("graphile-worker");
  return new Logger((scope) => (level: LogLevel, message: string) => {
    const ours: Level = level === "error" ? "error" : level === "warning" ? "warn" : "debug";
    write(ours, "graphile-worker", message, scope.workerId ? { workerId: scope.workerId } : {});
  });
}
