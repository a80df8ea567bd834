/**
 * The one stand-in the tests allow: a real HTTP server on 127.0.0.1 that
 * speaks Ollama's native API (/api/generate, /api/chat: NDJSON when
 * streaming) and OpenAI's chat completions (server-sent events when
 * streaming), byte for byte as the real servers do, with controllable
 * latency, generation and faults, and a record of every request.
 *
 * Streams follow the servers' own sources: Ollama's server/routes.go
 * (one JSON object per line, the last `done: true` with done_reason and the
 * counts and durations in nanoseconds; an error after the 200 as one more
 * `{"error": …}` line), llama.cpp's tools/server (a role chunk with the first
 * token, content deltas, a separate finish chunk, a usage chunk with its
 * `timings`, `data: [DONE]`; a `:` ping after silence; an error event and no
 * [DONE] after a failure) and vLLM's (the finish_reason on the last content
 * chunk; [DONE] even after an error).
 */
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  /** The client's port: the same port means the same (kept-alive) connection. */
  remotePort: number | undefined;
  body: any;
  /** The prompt text (Ollama `prompt`, or the last user message). */
  prompt: string | null;
  startedAtMs: number;
  endedAtMs: number | null;
  /**
   * The same instants in high resolution (performance.timeOrigin + performance.now(), in ms),
   * for the bench's gap measurements: the start is taken when the request's headers arrive,
   * before its body is read; the end when the answer has been handed to the socket, or the
   * client has left.
   */
  startedAtHr: number;
  endedAtHr: number | null;
  /** For a streamed answer: the tokens written before it ended or the client left. */
  tokensStreamed: number;
  /** For a `streamBytes` reply: how many answer bytes were written before it ended or the client left. */
  bytesStreamed?: number;
  /** True if the client went away before the answer ended. */
  clientLeft: boolean;
  /** For a `loopTokens` reply: when the first token of the loop was written (Date.now()). */
  loopStartedAtMs: number | null;
  /** What the request was: an answer to a prompt, Ollama's load or unload of the model, or a GET. */
  kind: "generate" | "load" | "unload" | "get";
}

/** What to do with one generate request. Anything left out gets the normal answer. */
export interface Reply {
  /** Before the status line and headers are sent. */
  delayMs?: number;
  status?: number;
  headers?: Record<string, string>;
  /** A raw body to send instead of the answer (with the content type of what was asked: a stream or JSON). */
  rawBody?: string | Buffer;
  /** Write rawBody in pieces of this many bytes, 5 ms apart, so the client gets them in separate reads. */
  rawChunkBytes?: number;
  /** Overrides the answer text. */
  text?: string;
  /** The answer as exactly these tokens (default: the text split into words, each with its leading space). */
  tokens?: string[];
  /** Leave out the answer's text field (Ollama `response`, OpenAI `message.content`). */
  omitText?: boolean;
  /** Between the headers and the first token. */
  firstTokenDelayMs?: number;
  /** Between two tokens. */
  tokenDelayMs?: number;
  /** After the tokens, generate these tokens again and again, until the client leaves. */
  loopTokens?: string[];
  /** After this many tokens, send nothing more, holding the connection open until the client leaves. */
  stallAfterTokens?: number;
  /** After this many tokens, destroy the connection. */
  cutAfterTokens?: number;
  /** After this many tokens, report this error inside the stream, as the server would, and end. */
  errorAfterTokens?: { tokens: number; message: string };
  /** "stop" (the default) or "length". */
  finishReason?: string;
  /**
   * Write the whole stream at once (every token line, then the end), as an
   * LLM that had the answer ready would: the bench's instant LLM, so that
   * what it measures is the worker, not this server's writes.
   */
  burst?: boolean;
  /** Send headers and half the (non-streamed) body, then destroy the socket. */
  cutOff?: boolean;
  /** Destroy the socket without answering. */
  hangUp?: boolean;
  /**
   * Stream an answer of this many bytes, the way a runaway generation
   * arrives: varied text (not a loop), as fast as the client reads it.
   * Stops if the client leaves.
   */
  streamBytes?: number;
}

export type Behaviour = (req: RecordedRequest) => Reply | Promise<Reply>;

/** The default answer: echoes the prompt, so a test can tell which row got which answer. */
export function defaultAnswer(prompt: string): string {
  return `Respuesta para: ${prompt.slice(0, 200)}`;
}

/** A text as a server streams it: words, each with its leading white space, as BPE tokens mostly are. */
export function wordTokens(text: string): string[] {
  return text.match(/\s*\S+|\s+$/g) ?? [];
}

/** Which OpenAI-compatible server the /v1 stream imitates. */
export type OpenAiFlavour = "llama.cpp" | "vllm";

/**
 * What an Ollama does with a prompt longer than its context (num_ctx, or its default):
 * - "none": it has room for everything (the default here);
 * - "trim": it keeps num_ctx tokens, answers 200, and reports prompt_eval_count = num_ctx,
 *   ignoring truncate: false (Ollama before 0.12.6);
 * - "trim_half": it keeps num_ctx/2 + 2 (some models, ollama#17889);
 * - "honour_truncate": with truncate: false it answers 400, otherwise it trims (0.12.6 and later).
 */
export type OllamaTruncation = "none" | "trim" | "trim_half" | "honour_truncate";

/** The server's own token count of a text: about four characters a token, as real tokenizers do for prose. */
export function serverTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

export class FakeLlm {
  readonly requests: RecordedRequest[] = [];
  inFlight = 0;
  maxInFlight = 0;
  behaviour: Behaviour = () => ({});
  /** Models the server serves; others get the server's 404. */
  models = new Set(["llama3.2", "test-model"]);
  /** If set, requests must carry `Authorization: Bearer <apiKey>`. */
  apiKey: string | null = null;
  /** The OpenAI-compatible server whose stream this one imitates. */
  openaiFlavour: OpenAiFlavour = "llama.cpp";
  /** llama-server sends a `:` comment after this much silence in a stream (its --sse-ping-interval, 30 s). */
  pingSeconds = 30;
  /** Ollama's context when a request sets no num_ctx. */
  ollamaDefaultContext = 131_072;
  /** What Ollama does with a prompt longer than the context. */
  ollamaTruncation: OllamaTruncation = "none";
  /** Ollama before 0.4: a prompt seen before reports only what was not in its cache (1 token). */
  promptCache = false;
  private readonly seenPrompts = new Set<string>();
  /** How long Ollama's load of the model takes, and whether it fails (out of memory). */
  loadDelayMs = 0;
  loadFails = false;
  /** The model Ollama has loaded, with the context it was loaded with; null when none. */
  loaded: { model: string; context: number } | null = null;
  /**
   * llama-server: answers any model name, and reports its own (the model file's
   * path when no --alias is set), which is also the one name /v1/models lists.
   */
  anyModelAs: string | null = null;
  private server: http.Server | null = null;
  private readonly sockets = new Set<Socket>();
  private waiters: (() => void)[] = [];
  // After stopLikeLlamaServer(): streams in flight go silent, and stay open.
  private terminating = false;

  private constructor(public port: number) {}

  /** Back to a plain server: no behaviour, no knob set, no request recorded (a test bed calls it before each test). */
  reset(): void {
    this.requests.length = 0;
    this.maxInFlight = 0;
    this.behaviour = () => ({});
    this.models = new Set(["llama3.2", "test-model"]);
    this.apiKey = null;
    this.openaiFlavour = "llama.cpp";
    this.pingSeconds = 30;
    this.ollamaDefaultContext = 131_072;
    this.ollamaTruncation = "none";
    this.promptCache = false;
    this.seenPrompts.clear();
    this.loadDelayMs = 0;
    this.loadFails = false;
    this.loaded = null;
    this.anyModelAs = null;
  }

  /** Starts on 127.0.0.1, on `port` or a free one. */
  static async start(port = 0): Promise<FakeLlm> {
    const llm = new FakeLlm(port);
    await llm.listen();
    return llm;
  }

  get origin(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** LLM_BASE_URL for LLM_PROVIDER=openai. */
  get openaiBaseUrl(): string {
    return `${this.origin}/v1`;
  }

  /** Only the answers to prompts (not health probes, nor the model's loads and unloads). */
  get generateRequests(): RecordedRequest[] {
    return this.requests.filter((r) => r.kind === "generate");
  }

  /** Every POST, in order: prompts and the model's loads and unloads. */
  get posts(): RecordedRequest[] {
    return this.requests.filter((r) => r.method === "POST");
  }

  /** Resolves when `count` generate requests have completed (or rejects after `timeoutMs`). */
  async waitForRequests(count: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.generateRequests.filter((r) => r.endedAtMs !== null).length < count) {
      if (Date.now() > deadline) {
        throw new Error(`waited ${timeoutMs} ms for ${count} LLM requests; saw ${this.generateRequests.length}`);
      }
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  /** Stops listening and drops every connection: clients now get "connection refused". */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.terminating = false;
    if (!server) return;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * What llama-server does on SIGTERM with a request in flight: it stops
   * generating and closes its listening socket, so new connections (a health
   * probe) are refused, but the connection in flight stays open, silent,
   * until the client leaves. Idle kept-alive connections are closed.
   */
  stopLikeLlamaServer(): void {
    const server = this.server;
    this.server = null;
    this.terminating = true;
    if (!server) return;
    server.close();
    server.closeIdleConnections();
  }

  /** Listens again on the same port, after stop() or stopLikeLlamaServer(). */
  async restart(): Promise<void> {
    this.terminating = false;
    await this.listen();
  }

  private async listen(): Promise<void> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    server.keepAliveTimeout = 65_000;
    server.on("connection", (socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    waiters.forEach((w) => w());
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const startedAtHr = hrNow();
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString("utf8");
    const path = (req.url ?? "/").split("?")[0];
    let body: any = null;
    try {
      body = raw ? JSON.parse(raw) : null;
    } catch {
      body = undefined;
    }
    const record: RecordedRequest = {
      method: req.method ?? "GET",
      path,
      headers: req.headers,
      remotePort: req.socket.remotePort,
      body,
      prompt: null,
      startedAtMs: Date.now(),
      endedAtMs: null,
      startedAtHr,
      endedAtHr: null,
      tokensStreamed: 0,
      clientLeft: false,
      loopStartedAtMs: null,
      kind: req.method === "GET" ? "get" : "generate",
    };
    this.requests.push(record);
    let ended = false;
    const done = () => {
      if (ended) return;
      ended = true;
      record.endedAtHr = hrNow();
      record.endedAtMs = Date.now();
      this.notify();
    };

    if (req.method === "GET") {
      if (path === "/api/version") return json(res, 200, { version: "0.12.6" }, done);
      if (path === "/api/tags") return json(res, 200, { models: [...this.models].map((name) => ({ name, model: name })) }, done);
      if (path === "/api/ps") {
        const loaded = this.loaded;
        const models = loaded ? [{ name: loaded.model, model: loaded.model, size_vram: 1, context_length: loaded.context }] : [];
        return json(res, 200, { models }, done);
      }
      if (path === "/v1/models") {
        const ids = this.anyModelAs !== null ? [this.anyModelAs] : [...this.models];
        const data = ids.map((id) => ({ id, object: "model", created: 1_700_000_000, owned_by: this.anyModelAs !== null ? "llamacpp" : "library" }));
        return json(res, 200, { object: "list", data }, done);
      }
      return plain(res, 404, "404 page not found", done);
    }

    const openai = path === "/v1/chat/completions";
    const ollamaGenerate = path === "/api/generate";
    const ollamaChat = path === "/api/chat";
    if (!openai && !ollamaGenerate && !ollamaChat) return plain(res, 404, "404 page not found", done);

    // Validation, with each server's own error shapes.
    if (body === undefined || body === null || typeof body !== "object") {
      return openai
        ? json(res, 400, openaiError("We could not parse the JSON body of your request.", "invalid_request_error"), done)
        : json(res, 400, { error: "invalid character in JSON body" }, done);
    }
    if (openai && this.apiKey !== null && req.headers.authorization !== `Bearer ${this.apiKey}`) {
      return json(res, 401, openaiError("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"), done);
    }
    if (openai && this.anyModelAs !== null) body.model = this.anyModelAs;
    else if (!this.models.has(body.model)) {
      return openai
        ? json(res, 404, openaiError(`The model \`${body.model}\` does not exist.`, "NotFoundError", 404), done)
        : json(res, 404, { error: `model '${body.model}' not found` }, done);
    }
    if (openai) {
      if (!Array.isArray(body.messages) || body.messages.length === 0) {
        return json(res, 400, openaiError("'messages' is a required property", "invalid_request_error"), done);
      }
      record.prompt = [...body.messages].reverse().find((m: any) => m.role === "user")?.content ?? null;
    } else if (ollamaGenerate && (body.prompt === undefined || body.prompt === "")) {
      // Ollama's load (or, with keep_alive 0, unload) of the model: one JSON reply, never a stream.
      const unload = body.keep_alive === 0;
      record.kind = unload ? "unload" : "load";
      if (unload) {
        this.loaded = null;
        return json(res, 200, { model: body.model, created_at: new Date().toISOString(), response: "", done: true, done_reason: "unload" }, done);
      }
      if (this.loadDelayMs) await sleep(this.loadDelayMs);
      if (this.loadFails) return json(res, 500, { error: "model requires more system memory (5.5 GiB) than is available (1.2 GiB)" }, done);
      this.loaded = { model: body.model, context: body.options?.num_ctx ?? this.ollamaDefaultContext };
      return json(res, 200, { model: body.model, created_at: new Date().toISOString(), response: "", done: true, done_reason: "load" }, done);
    } else if (ollamaGenerate) {
      if (typeof body.prompt !== "string") return json(res, 400, { error: "prompt must be a string" }, done);
      record.prompt = body.prompt;
    } else {
      record.prompt = [...(body.messages ?? [])].reverse().find((m: any) => m.role === "user")?.content ?? null;
    }
    // Ollama streams unless told not to; OpenAI servers only when asked.
    const stream = openai ? body.stream === true : body.stream !== false;

    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    let counted = true;
    const leave = () => {
      if (!counted) return;
      counted = false;
      this.inFlight -= 1;
    };
    res.on("close", () => {
      if (!res.writableFinished) record.clientLeft = true;
      leave();
      done();
    });

    const reply = await this.behaviour(record);
    if (reply.delayMs) await sleep(reply.delayMs);
    if (reply.hangUp) {
      req.socket.destroy();
      return;
    }
    const status = reply.status ?? 200;
    const kind: WireKind = openai ? (this.openaiFlavour === "vllm" ? "vllm" : "llama.cpp") : ollamaChat ? "ollama-chat" : "ollama-generate";
    if (reply.rawBody !== undefined) {
      res.writeHead(status, { "content-type": stream && status < 400 ? streamType(kind) : JSON_TYPE, ...reply.headers });
      const bytes = Buffer.from(reply.rawBody);
      const step = reply.rawChunkBytes ?? bytes.length;
      for (let i = 0; i < bytes.length - step; i += step) {
        res.write(bytes.subarray(i, i + step));
        await sleep(5);
      }
      res.end(bytes.subarray(Math.max(0, Math.ceil(bytes.length / step) - 1) * step));
      return;
    }
    if (status >= 400) {
      const payload = JSON.stringify(openai ? openaiError(`error ${status}`, "server_error", status) : { error: `error ${status}` });
      res.writeHead(status, { "content-type": JSON_TYPE, "content-length": String(Buffer.byteLength(payload)), ...reply.headers });
      res.end(payload);
      return;
    }
    const text = reply.text ?? defaultAnswer(record.prompt ?? "");
    let promptTokens = serverTokens(record.prompt ?? "");
    if (!openai) {
      // What Ollama reads of the prompt, under its context and its truncation (see OllamaTruncation).
      const context = body.options?.num_ctx ?? this.ollamaDefaultContext;
      if (this.loaded === null || this.loaded.model !== body.model || this.loaded.context !== context) this.loaded = { model: body.model, context };
      if (promptTokens > context) {
        if (this.ollamaTruncation === "honour_truncate" && body.truncate === false) {
          return json(res, 400, { error: "the input length exceeds the context length" }, done);
        }
        if (this.ollamaTruncation === "trim" || this.ollamaTruncation === "honour_truncate") promptTokens = context;
        if (this.ollamaTruncation === "trim_half") promptTokens = Math.floor(context / 2) + 2;
      }
      if (this.promptCache && this.seenPrompts.has(record.prompt ?? "")) promptTokens = 1;
      this.seenPrompts.add(record.prompt ?? "");
    }
    if (reply.streamBytes !== undefined) return floodBody(res, record, kind, body.model, reply.streamBytes);
    if (stream) {
      const wire = new Wire(kind, body.model, promptTokens, body.stream_options?.include_usage === true);
      return this.stream(res, record, wire, reply.tokens ?? wordTokens(text), reply);
    }

    const completionTokens = text.split(/\s+/).filter(Boolean).length;
    const finishReason = reply.finishReason ?? "stop";
    const payload = JSON.stringify(
      openai
        ? openaiCompletion(body.model, reply.omitText ? undefined : text, promptTokens, completionTokens, finishReason)
        : { ...ollamaFinal(body.model, promptTokens, completionTokens, finishReason, ollamaChat, reply.omitText ? undefined : text) },
    );
    res.writeHead(status, { "content-type": JSON_TYPE, "content-length": String(Buffer.byteLength(payload)), ...reply.headers });
    if (reply.cutOff) {
      res.write(payload.slice(0, Math.floor(payload.length / 2)));
      setTimeout(() => req.socket.destroy(), 20);
      return;
    }
    res.end(payload);
  }

  /** Writes a streamed answer token by token, with the reply's delays and faults. */
  private async stream(res: http.ServerResponse, record: RecordedRequest, wire: Wire, tokens: string[], reply: Reply): Promise<void> {
    res.writeHead(200, { "content-type": streamType(wire.kind), ...(wire.kind === "llama.cpp" ? { "x-accel-buffering": "no" } : {}), ...reply.headers });
    res.flushHeaders();
    const open = () => !res.destroyed && !record.clientLeft && !this.terminating;
    // llama-server's keep-alive comment during silence; not part of the answer.
    const ping =
      wire.kind === "llama.cpp" && this.pingSeconds > 0
        ? setInterval(() => !res.destroyed && !record.clientLeft && res.write(":\n\n"), this.pingSeconds * 1000)
        : null;
    // A wait that ends early when the client leaves, so no timer outlives the request.
    const wait = async (ms: number | undefined) => {
      if (!ms) return;
      ping?.refresh();
      await new Promise<void>((resolve) => {
        const left = () => (clearTimeout(timer), resolve());
        const timer = setTimeout(() => (res.off("close", left), resolve()), ms);
        res.once("close", left);
      });
    };
    const send = (piece: string) => {
      ping?.refresh();
      return res.write(piece);
    };
    if (reply.burst) {
      record.tokensStreamed = tokens.length;
      res.end(tokens.map((t) => wire.token(t, reply.omitText === true)).join("") + wire.end(reply.finishReason ?? "stop", tokens.length));
      if (ping) clearInterval(ping);
      return;
    }
    try {
      await wait(reply.firstTokenDelayMs);
      const all = reply.loopTokens ? loopForever(tokens, reply.loopTokens) : tokens[Symbol.iterator]();
      for (const token of all) {
        if (reply.loopTokens && record.tokensStreamed === tokens.length && record.loopStartedAtMs === null) record.loopStartedAtMs = Date.now();
        if (!open()) break;
        const n = record.tokensStreamed;
        if (reply.cutAfterTokens !== undefined && n >= reply.cutAfterTokens) {
          // As a crashing server's does: what was written arrives, then the
          // connection closes without the stream's end.
          res.socket?.end();
          return;
        }
        if (reply.stallAfterTokens !== undefined && n >= reply.stallAfterTokens) break;
        if (reply.errorAfterTokens !== undefined && n >= reply.errorAfterTokens.tokens) {
          res.end(wire.error(reply.errorAfterTokens.message));
          return;
        }
        if (n > 0) await wait(reply.tokenDelayMs);
        if (!open()) break;
        if (!send(wire.token(token, reply.omitText === true))) await new Promise((r) => res.once("drain", r));
        record.tokensStreamed += 1;
      }
      if (open() && reply.stallAfterTokens === undefined) {
        res.end(wire.end(reply.finishReason ?? "stop", record.tokensStreamed));
        return;
      }
      // Stalled, or a server going down: hold the connection, sending nothing
      // but llama-server's pings (which a real one keeps sending after SIGTERM), until the client leaves.
      await new Promise<void>((resolve) => (res.destroyed ? resolve() : res.once("close", () => resolve())));
    } finally {
      if (ping) clearInterval(ping);
    }
  }
}

type WireKind = "ollama-generate" | "ollama-chat" | "llama.cpp" | "vllm";

const JSON_TYPE = "application/json; charset=utf-8";

function streamType(kind: WireKind): string {
  if (kind === "vllm") return "text/event-stream; charset=utf-8";
  return kind === "llama.cpp" ? "text/event-stream" : "application/x-ndjson";
}

/** The bytes of one streamed answer, in the format of the server it imitates. */
class Wire {
  private readonly id = "chatcmpl-" + Math.random().toString(36).slice(2, 12);
  private readonly created = Math.floor(Date.now() / 1000);
  private first = true;

  constructor(
    readonly kind: WireKind,
    private readonly model: string,
    private readonly promptTokens: number,
    private readonly includeUsage: boolean,
  ) {}

  token(token: string, omitText: boolean): string {
    const first = this.first;
    this.first = false;
    switch (this.kind) {
      case "ollama-generate":
        return line({ model: this.model, created_at: new Date().toISOString(), ...(omitText ? {} : { response: token }), done: false });
      case "ollama-chat":
        return line({ model: this.model, created_at: new Date().toISOString(), message: { role: "assistant", content: token }, done: false });
      case "llama.cpp": {
        // The role comes with the first token, content null; later deltas carry content only.
        const role = first ? sse(this.chunk([{ finish_reason: null, index: 0, delta: { role: "assistant", content: null } }])) : "";
        return role + sse(this.chunk([{ finish_reason: null, index: 0, delta: { content: token } }]));
      }
      case "vllm": {
        const role = first ? sse(this.chunk([{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }])) : "";
        // vLLM puts the finish_reason on the last content chunk; hold each one back until the next.
        const held = this.pending;
        this.pending = { index: 0, delta: { content: token }, logprobs: null, finish_reason: null };
        return role + (held ? sse(this.chunk([held])) : "");
      }
    }
  }

  private pending: Record<string, unknown> | null = null;

  end(finishReason: string, completionTokens: number): string {
    switch (this.kind) {
      case "ollama-generate":
      case "ollama-chat":
        return line(ollamaFinal(this.model, this.promptTokens, completionTokens, finishReason, this.kind === "ollama-chat", ""));
      case "llama.cpp": {
        const usage = { completion_tokens: completionTokens, prompt_tokens: this.promptTokens, total_tokens: completionTokens + this.promptTokens, prompt_tokens_details: { cached_tokens: 0 } };
        const timings = {
          cache_n: 0, prompt_n: this.promptTokens, prompt_ms: 12.5, prompt_per_token_ms: 1, prompt_per_second: 1000,
          predicted_n: completionTokens, predicted_ms: completionTokens * 10, predicted_per_token_ms: 10, predicted_per_second: 100,
        };
        const finish = this.chunk([{ finish_reason: finishReason, index: 0, delta: {} }]);
        return (
          sse(this.includeUsage ? finish : { ...finish, timings }) +
          (this.includeUsage ? sse({ ...this.chunk([]), usage, timings }) : "") +
          "data: [DONE]\n\n"
        );
      }
      case "vllm": {
        const last = { ...(this.pending ?? { index: 0, delta: { content: "" }, logprobs: null }), finish_reason: finishReason, stop_reason: null };
        this.pending = null;
        const usage = { prompt_tokens: this.promptTokens, total_tokens: completionTokens + this.promptTokens, completion_tokens: completionTokens };
        return sse(this.chunk([last])) + (this.includeUsage ? sse({ ...this.chunk([]), usage }) : "") + "data: [DONE]\n\n";
      }
    }
  }

  /** An error that happens after the 200 has gone out. */
  error(message: string): string {
    switch (this.kind) {
      case "ollama-generate":
      case "ollama-chat":
        return line({ error: message });
      case "llama.cpp":
        // "terminate on error": no [DONE].
        return sse({ error: { code: 500, message, type: "server_error" } });
      case "vllm":
        return sse({ error: { message, type: "InternalServerError", param: null, code: 500 } }) + "data: [DONE]\n\n";
    }
  }

  private chunk(choices: unknown[]) {
    const base = { id: this.id, object: "chat.completion.chunk", created: this.created, model: this.model };
    return this.kind === "llama.cpp" ? { choices, created: this.created, id: this.id, model: this.model, system_fingerprint: "b10573-test", object: "chat.completion.chunk" } : { ...base, choices };
  }
}

function* loopForever(first: string[], loop: string[]): Generator<string> {
  yield* first;
  for (;;) yield* loop;
}

function line(value: unknown): string {
  return JSON.stringify(value) + "\n";
}

function sse(value: unknown): string {
  return `data: ${JSON.stringify(value)}\n\n`;
}

/** Wall-clock milliseconds with sub-millisecond resolution. */
export function hrNow(): number {
  return performance.timeOrigin + performance.now();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// 64 KiB of varied letters (a flood, not a loop: the repetition guard must not be what stops it).
const FLOOD_TEXT = (() => {
  let seed = 12345;
  let out = "";
  while (out.length < 64 * 1024) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    out += "abcdefghijklmnopqrstuvwxyz .,\n"[seed % 30];
  }
  return out;
})();

/** A runaway answer of `total` bytes, streamed as fast as the client reads, in the server's format. */
function floodBody(res: http.ServerResponse, record: RecordedRequest, kind: WireKind, model: string, total: number): void {
  const wire = new Wire(kind, model, 1, false);
  res.writeHead(200, { "content-type": streamType(kind) });
  record.bytesStreamed = 0;
  const pump = () => {
    while (!res.destroyed && record.bytesStreamed! < total) {
      const piece = FLOOD_TEXT.slice(0, Math.min(FLOOD_TEXT.length, total - record.bytesStreamed!));
      record.bytesStreamed! += piece.length;
      record.tokensStreamed += 1;
      if (!res.write(wire.token(piece, false))) return void res.once("drain", pump);
    }
    if (!res.destroyed) res.end(wire.end("length", record.tokensStreamed));
  };
  pump();
}

function json(res: http.ServerResponse, status: number, body: unknown, done: () => void): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": JSON_TYPE, "content-length": Buffer.byteLength(text) });
  res.end(text, done);
}

/** Ollama's (gin's) plain-text 404 for an unknown path. */
function plain(res: http.ServerResponse, status: number, text: string, done: () => void): void {
  res.writeHead(status, { "content-type": "text/plain", "content-length": Buffer.byteLength(text) });
  res.end(text, done);
}

function openaiError(message: string, type: string, code: string | number | null = null) {
  return { error: { message, type, param: null, code } };
}

function openaiCompletion(model: string, text: string | undefined, promptTokens: number, completionTokens: number, finishReason: string) {
  return {
    id: "chatcmpl-" + Math.random().toString(36).slice(2),
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model,
    system_fingerprint: "fp_test",
    choices: [
      {
        index: 0,
        message: text === undefined ? { role: "assistant" } : { role: "assistant", content: text },
        logprobs: null,
        finish_reason: finishReason,
      },
    ],
    usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
  };
}

/** Ollama's last line (or whole reply with stream: false): done, done_reason, counts and durations in ns. */
function ollamaFinal(model: string, promptTokens: number, completionTokens: number, finishReason: string, chat: boolean, text: string | undefined) {
  const created_at = new Date().toISOString();
  const head = chat
    ? { model, created_at, ...(text === undefined ? {} : { message: { role: "assistant", content: text } }) }
    : { model, created_at, ...(text === undefined ? {} : { response: text }) };
  return {
    ...head,
    done: true,
    done_reason: finishReason,
    ...(chat ? {} : { context: [1, 2, 3] }),
    total_duration: 5_043_500_667,
    load_duration: 5_025_959,
    prompt_eval_count: promptTokens,
    prompt_eval_duration: 325_953_000,
    eval_count: completionTokens,
    eval_duration: 4_709_213_000,
  };
}
