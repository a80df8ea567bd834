/**
 * Did the server read the whole prompt? A row marked 'listo' promises that
 * the model answered *that* prompt, and servers break it in two ways:
 *
 * - they refuse a prompt longer than their context, each in its own words
 *   (vLLM's 400 "maximum context length is N tokens", llama.cpp's 400
 *   exceed_context_size_error, TGI's 422, LM Studio's error on a 200, Ollama's
 *   400 with truncate: false): contextRefusal() recognises them;
 * - Ollama trims it and answers 200 (before 0.12.6, or with its default
 *   truncate), keeping num_ctx tokens, or num_ctx/2 + 2 on some models, and
 *   only its own log says so: trimmedPrompt() tells from what it reports.
 *
 * Both end the row 'error' at once, as finish_reason 'truncated_input'.
 */

// js-tiktoken's count is an estimate of a self-hosted model's own tokenizer:
// the prompt surely has at least this share of what js-tiktoken counts.
export const TOKENIZER_MARGIN = 0.7;
// No server's context is smaller than this; a smaller reported count is a
// prompt cache answering, not a trimmed prompt.
const MIN_CONTEXT_TOKENS = 1024;

export interface TrimFacts {
  /** The prompt's own tokens, as js-tiktoken counts them (tokens_in). */
  promptTokens: number;
  /** What the server says it read (Ollama's prompt_eval_count, usage.prompt_tokens). */
  reportedPromptTokens: number | null;
  /** The context in force: LLM_CONTEXT_TOKENS, or what the server reports for the loaded model. */
  contextTokens: number | null;
}

/**
 * True if the server read less than the whole prompt. A prompt cache can make
 * a server report fewer evaluated tokens than a prompt has (Ollama before
 * 0.4), so a low count alone is not a trim: it must sit at a context limit
 * (num_ctx, or num_ctx/2 + 2), or the prompt must be too long to fit at all.
 */
export function trimmedPrompt(f: TrimFacts): boolean {
  const surely = Math.floor(f.promptTokens * TOKENIZER_MARGIN);
  const read = f.reportedPromptTokens;
  if (read !== null && read >= surely) return false;
  if (f.contextTokens !== null) {
    if (surely > f.contextTokens) return true;
    if (read === null) return false;
    const slack = Math.max(16, Math.ceil(f.contextTokens / 100));
    return Math.abs(read - f.contextTokens) <= slack || Math.abs(read - (f.contextTokens / 2 + 2)) <= slack;
  }
  return read !== null && read >= MIN_CONTEXT_TOKENS;
}

/** The message of a trimmed prompt: both sizes, and the fix. */
export function trimmedMessage(f: TrimFacts): string {
  const context = f.contextTokens ?? f.reportedPromptTokens;
  const read = f.reportedPromptTokens !== null && f.reportedPromptTokens !== context ? ` (it read ${formatCount(f.reportedPromptTokens)})` : "";
  return (
    `the server trimmed the prompt: its context is ${context === null ? "smaller than the prompt" : `${formatCount(context)} tokens`} ` +
    `and the prompt has about ${formatCount(f.promptTokens)}${read}: set LLM_CONTEXT_TOKENS or shorten the prompt`
  );
}

/** The sizes a server's refusal gives, when it gives them. */
export interface Refusal {
  promptTokens: number | null;
  contextTokens: number | null;
}

const REFUSALS: RegExp[] = [
  /exceed_context_size_error/,
  /exceeds the available context size/i,
  /maximum context length is/i,
  /context length is only/i,
  /input length exceeds the context length/i,
  /prompt is longer than the context length/i,
  /does not fit in context length/i,
  /greater than the context length/i,
  /context_length_exceeded/,
  /`inputs` tokens \+ `max_new_tokens` must be <=/,
  /`inputs` must have less than \d+ tokens/,
  /larger than the max context size/i,
];

/** If this error (its message and raw body) is a server refusing a prompt longer than its context: what it says of the sizes. */
export function contextRefusal(message: string, body: unknown): Refusal | null {
  const text = `${message} ${typeof body === "string" ? body : JSON.stringify(body ?? "")}`;
  if (!REFUSALS.some((pattern) => pattern.test(text))) return null;
  const field = (name: string) => {
    const match = new RegExp(`"${name}"\\s*:\\s*(\\d+)`).exec(text);
    return match ? Number(match[1]) : null;
  };
  const first = (patterns: RegExp[]) => {
    for (const p of patterns) {
      const match = p.exec(text);
      if (match) return Number(match[1].replaceAll(",", ""));
    }
    return null;
  };
  return {
    promptTokens:
      field("n_prompt_tokens") ??
      first([/request \((\d+) tokens\)/, /You passed (\d+) input tokens/, /\((\d+) in the messages/, /you requested (\d+) tokens/, /The input has (\d+) tokens/, /Given: (\d+)/, /input \((\d+) tokens\)/]),
    contextTokens:
      field("n_ctx") ??
      first([/context size \((\d+) tokens\)/, /maximum context length is (\d+)/, /context length is only (\d+)/, /only supports (\d+) tokens/, /must be <= (\d+)/, /less than (\d+) tokens/, /max context size \((\d+) tokens\)/]),
  };
}

/** The message of a refused prompt: the sizes where the server gave them, its own words, and the fix. */
export function refusalMessage(refusal: Refusal, serverMessage: string): string {
  const sizes =
    refusal.contextTokens !== null && refusal.promptTokens !== null
      ? `its context is ${formatCount(refusal.contextTokens)} tokens and the prompt has ${formatCount(refusal.promptTokens)}`
      : refusal.contextTokens !== null
        ? `its context is ${formatCount(refusal.contextTokens)} tokens`
        : "the prompt is longer than its context";
  return `the server refused the prompt: ${sizes} (${serverMessage}): set LLM_CONTEXT_TOKENS or shorten the prompt`;
}

function formatCount(n: number): string {
  return n.toLocaleString("en-US");
}
