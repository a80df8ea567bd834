/**
 * The model's stay on the GPU for one night. Ollama loads a model on its
 * first request (30 s to minutes) and unloads it 5 minutes after its last, so
 * left alone it would add the load to the first prompt's tiempo_ejecucion,
 * charge prompts for a model that cannot load, and hold the GPU after 06:00.
 * Instead, before the first prompt of a night (or after a release or an
 * outage) the model is loaded by an empty request, timed and logged; it is
 * kept for LLM_KEEP_ALIVE between prompts; and it is unloaded when the queue
 * closes, or when it has had nothing to do for a while inside the window
 * (unless LLM_RELEASE_AT_END=false). Servers that keep their model loaded
 * (OpenAI-compatible) get only the check that they list LLM_MODEL.
 */
import type { Config } from "../config";
import { logger } from "../log";
import type { LlmClient } from "./client";
import { LlmError } from "./errors";

const log = logger("llm");

// Inside the window, a queue with nothing to start for this long is empty:
// long enough for a retry's delay between two prompts, short against a GPU hour.
export const IDLE_RELEASE_SECONDS = 30;
// The check runs at start-up and at each first prompt of a night; once said, a complaint waits this long.
const CHECK_QUIET_MS = 10 * 60_000;

export interface ResidencyEvents {
  /** The model is being loaded. */
  loading(): void;
  /** Loaded, in this many seconds. */
  loaded(seconds: number): void;
  /** The first prompt of a night starts on a server that keeps its model loaded. */
  inUse(): void;
  /** Unloaded (or, for a server that keeps its model, no longer in use). */
  released(reason: string): void;
}

export class ModelResidency {
  private active = false;
  private loading: Promise<void> | null = null;
  private running = 0;
  private lastActivityMs = Date.now();
  // A load that failed: its retries must not cover the misconfigured state with "loading".
  private loadFailed = false;
  // The check's last complaint, and when: the same one is not repeated within CHECK_QUIET_MS.
  private lastComplaint: { text: string; atMs: number } | null = null;
  /** The context in force for the loaded model, as the server reports it (Ollama's /api/ps). */
  contextTokens: number | null = null;

  constructor(
    private readonly llm: LlmClient,
    private readonly settings: Config["llm"],
    private readonly events: ResidencyEvents,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** True between the first prompt of a night and the release. */
  get inUse(): boolean {
    return this.active;
  }

  /**
   * Before a prompt: loads the model if this is the first prompt since the
   * last release (and checks that the server lists LLM_MODEL). Throws
   * LlmError: load_failed if the server cannot load it, unavailable if it
   * cannot be reached.
   */
  async ensureLoaded(): Promise<void> {
    if (this.active) return;
    // A server with several slots (LLM_CONCURRENCY_PER_SERVER) starts several
    // prompts at once: they all wait for the one load.
    this.loading ??= this.load().finally(() => (this.loading = null));
    await this.loading;
  }

  private async load(): Promise<void> {
    if (this.llm.loads) {
      if (!this.loadFailed) {
        log.info(`loading model ${this.settings.model} before the first prompt (keep_alive ${this.settings.keepAliveSeconds} s)`);
        this.events.loading();
      }
      let seconds: number;
      try {
        seconds = await this.llm.load();
      } catch (error) {
        // Never the prompt's fault: with an HTTP error the server cannot load the
        // model (missing, out of memory); without one it cannot be reached.
        this.loadFailed = true;
        const e = error instanceof LlmError ? error : new LlmError("unavailable", String((error as Error)?.message ?? error));
        const listed = e.httpStatus !== null ? await this.llm.listModels() : null;
        const has = listed === null ? "" : `; the server has: ${listed.join(", ") || "no model at all"}`;
        throw new LlmError("load_failed", `model ${this.settings.model} could not be loaded: ${e.message}${has}`, e.httpStatus, e.retryAfterSeconds);
      }
      this.loadFailed = false;
      this.contextTokens = await this.llm.runningContext();
      const context = this.contextTokens === null ? "" : ` (context ${this.contextTokens.toLocaleString("en-US")} tokens)`;
      log.info(`model ${this.settings.model} loaded in ${seconds.toFixed(1)} s${context}; the first prompt starts now`, { loadSeconds: round2(seconds) });
      this.events.loaded(seconds);
    } else {
      this.events.inUse();
    }
    this.active = true;
    this.lastActivityMs = this.nowMs();
    void this.checkModel();
  }

  /** A prompt starts (after ensureLoaded) or ends. */
  promptStarted(): void {
    this.running += 1;
    this.lastActivityMs = this.nowMs();
  }

  promptEnded(): void {
    this.running = Math.max(0, this.running - 1);
    this.lastActivityMs = this.nowMs();
  }

  /** The server went away: whatever it had loaded may be gone; load again before the next prompt. */
  forget(): void {
    this.active = false;
    this.contextTokens = null;
  }

  /**
   * Called every few seconds: releases the model when the queue is closed, or
   * has had nothing to start for IDLE_RELEASE_SECONDS, and no prompt runs.
   * Never during an outage's back-off: the model must not be lost between two tries.
   */
  async releaseIfDone(facts: { queueOpen: boolean; llmUp: boolean }): Promise<void> {
    if (!this.active || this.running > 0 || !facts.llmUp) return;
    const idleSeconds = (this.nowMs() - this.lastActivityMs) / 1000;
    if (facts.queueOpen && idleSeconds < IDLE_RELEASE_SECONDS) return;
    await this.release(facts.queueOpen ? `the queue has had nothing to start for ${Math.round(idleSeconds)} s` : "the queue closed");
  }

  private async release(reason: string): Promise<void> {
    this.active = false;
    if (!this.llm.loads || !this.settings.releaseAtEnd) {
      this.events.released(reason);
      return;
    }
    try {
      await this.llm.unload();
      log.info(`model ${this.settings.model} unloaded: ${reason}`);
      this.events.released(reason);
    } catch (error) {
      // Not worth an outage: Ollama unloads it anyway after LLM_KEEP_ALIVE.
      log.warn(`could not unload model ${this.settings.model} (${reason}); the server unloads it after LLM_KEEP_ALIVE`, {
        error: (error as Error).message,
      });
    }
  }

  /** Says loudly when the server does not list LLM_MODEL, naming what it has. */
  async checkModel(): Promise<void> {
    const listed = await this.llm.listModels();
    if (listed === null || listed.some((name) => this.llm.isOurModel(name))) return;
    const anyName = this.llm.loads ? "" : " (a server that answers any model name, as llama-server does, still answers: check that it runs the model you mean)";
    const text = `the LLM server does not list LLM_MODEL=${this.settings.model}; it has: ${listed.join(", ") || "no model at all"}${anyName}`;
    const nowMs = this.nowMs();
    if (this.lastComplaint?.text === text && nowMs - this.lastComplaint.atMs < CHECK_QUIET_MS) return;
    this.lastComplaint = { text, atMs: nowMs };
    log.error(text);
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
