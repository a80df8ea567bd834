/**
 * The two ways an answer is framed on the wire when it streams: Ollama's
 * NDJSON (one JSON value per line) and OpenAI's server-sent events
 * (`data: …` lines, events separated by a blank line). A network read is not
 * a line or an event: one read may hold several, and a line, or a UTF-8
 * character, may straddle two reads. So bytes are buffered and only whole
 * lines are decoded.
 */
import { LlmError } from "./errors";

const NEWLINE = 0x0a;

/** Splits a byte stream into lines; a line longer than `maxLineBytes` is refused. */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly maxLineBytes: number) {}

  /** The whole lines completed by this chunk, without their line ends (\n, or \r\n). */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let i = chunk.indexOf(NEWLINE); i !== -1; i = chunk.indexOf(NEWLINE, start)) {
      const piece = chunk.subarray(start, i);
      const whole = this.pending.length === 0 ? piece : Buffer.concat([...this.pending, piece]);
      this.pending = [];
      this.pendingBytes = 0;
      lines.push(stripCarriageReturn(whole.toString("utf8")));
      start = i + 1;
    }
    if (start < chunk.length) {
      this.pending.push(chunk.subarray(start));
      this.pendingBytes += chunk.length - start;
      if (this.pendingBytes > this.maxLineBytes) {
        throw new LlmError("too_large", `the LLM sent a line of more than ${this.maxLineBytes} bytes (LLM_MAX_RESPONSE_BYTES)`);
      }
    }
    return lines;
  }

  /** What is left after the last line end, if anything. */
  end(): string | null {
    if (this.pending.length === 0) return null;
    const rest = stripCarriageReturn(Buffer.concat(this.pending).toString("utf8"));
    this.pending = [];
    this.pendingBytes = 0;
    return rest === "" ? null : rest;
  }
}

function stripCarriageReturn(line: string): string {
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}

/** One server-sent event: its `event:` name (null for the default) and its joined `data:` lines. */
export interface ServerSentEvent {
  event: string | null;
  data: string;
}

/**
 * Server-sent events, as the EventSource rules read them: `data:` with or
 * without a space (TGI sends none), several data lines joined by \n, comment
 * lines (`:`, llama-server's keep-alive ping) and `id:`/`retry:` ignored.
 */
export class SseParser {
  private readonly lines: LineSplitter;
  private event: string | null = null;
  private data: string[] = [];

  constructor(maxLineBytes: number) {
    this.lines = new LineSplitter(maxLineBytes);
  }

  push(chunk: Buffer): ServerSentEvent[] {
    const events: ServerSentEvent[] = [];
    for (const line of this.lines.push(chunk)) this.line(line, events);
    return events;
  }

  /** The last event, if the stream ended without the blank line after it. */
  end(): ServerSentEvent[] {
    const events: ServerSentEvent[] = [];
    const rest = this.lines.end();
    if (rest !== null) this.line(rest, events);
    this.line("", events);
    return events;
  }

  private line(line: string, events: ServerSentEvent[]): void {
    if (line === "") {
      if (this.data.length > 0) events.push({ event: this.event, data: this.data.join("\n") });
      this.event = null;
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
  }
}
