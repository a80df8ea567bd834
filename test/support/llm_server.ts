/**
 * The one stand-in the tests allow: a real HTTP server on 127.0.0.1 that
 * speaks Ollama's native API and OpenAI's chat completions exactly, with
 * controllable latency and faults, and that records every request.
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
  /** The prompt text (Ollama `prompt`, or the last OpenAI user message). */
  prompt: string | null;
  startedAtMs: number;
  endedAtMs: number | null;
  /**
   * The same instants in high resolution (performance.timeOrigin + performance.now(), in ms),
   * for the bench's gap measurements: the start is taken when the request's headers arrive,
   * before its body is read; the end when the answer has been handed to the socket.
   */
  startedAtHr: number;
  endedAtHr: number | null;
  /** For a `streamBytes` reply: how many body bytes were written before it ended or the client left. */
  bytesStreamed?: number;
}

/** What to do with one generate request. Anything left out gets the normal answer. */
export interface Reply {
  delayMs?: number;
  status?: number;
  headers?: Record<string, string>;
  /** A raw body to send instead of the JSON answer. */
  rawBody?: string | Buffer;
  /** Overrides the answer text. */
  text?: string;
  /** Leave out the answer text (Ollama `response`, OpenAI `message.content`). */
  omitText?: boolean;
  /** Send headers and half the body, then destroy the socket. */
  cutOff?: boolean;
  /** Destroy the socket without answering. */
  hangUp?: boolean;
  /**
   * Stream a 200 body of this many bytes, chunked without Content-Length, the
   * way a runaway generation arrives: an answer that opens and never closes.
   * Written as the client reads, so it costs no memory; stops if the client leaves.
   */
  streamBytes?: number;
}

export type Behaviour = (req: RecordedRequest) => Reply | Promise<Reply>;

/** The default answer: echoes the prompt, so a test can tell which row got which answer. */
export function defaultAnswer(prompt: string): string {
  return `Respuesta para: ${prompt.slice(0, 200)}`;
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
  private server: http.Server | null = null;
  private readonly sockets = new Set<Socket>();
  private waiters: (() => void)[] = [];

  private constructor(public port: number) {}

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

  /** Only the generate calls (not health probes). */
  get generateRequests(): RecordedRequest[] {
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
    if (!server) return;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Listens again on the same port, after stop(). */
  async restart(): Promise<void> {
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
    };
    this.requests.push(record);
    const done = () => {
      record.endedAtHr = hrNow();
      record.endedAtMs = Date.now();
      const waiters = this.waiters;
      this.waiters = [];
      waiters.forEach((w) => w());
    };

    if (req.method === "GET") {
      if (path === "/api/version") return json(res, 200, { version: "0.5.7" }, done);
      if (path === "/api/tags") return json(res, 200, { models: [...this.models].map((name) => ({ name, model: name })) }, done);
      if (path === "/v1/models") {
        const data = [...this.models].map((id) => ({ id, object: "model", created: 1_700_000_000, owned_by: "library" }));
        return json(res, 200, { object: "list", data }, done);
      }
      return json(res, 404, { error: "404 page not found" }, done);
    }

    const openai = path === "/v1/chat/completions";
    const ollamaGenerate = path === "/api/generate";
    const ollamaChat = path === "/api/chat";
    if (!openai && !ollamaGenerate && !ollamaChat) return json(res, 404, { error: "404 page not found" }, done);

    // Validation, with each server's own error shapes.
    if (body === undefined || body === null || typeof body !== "object") {
      return openai
        ? json(res, 400, openaiError("We could not parse the JSON body of your request.", "invalid_request_error"), done)
        : json(res, 400, { error: "invalid character in JSON body" }, done);
    }
    if (openai && this.apiKey !== null && req.headers.authorization !== `Bearer ${this.apiKey}`) {
      return json(res, 401, openaiError("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"), done);
    }
    if (!this.models.has(body.model)) {
      return openai
        ? json(res, 404, openaiError(`The model \`${body.model}\` does not exist.`, "invalid_request_error", "model_not_found"), done)
        : json(res, 404, { error: `model "${body.model}" not found, try pulling it first` }, done);
    }
    if (openai) {
      if (!Array.isArray(body.messages) || body.messages.length === 0) {
        return json(res, 400, openaiError("'messages' is a required property", "invalid_request_error"), done);
      }
      record.prompt = [...body.messages].reverse().find((m: any) => m.role === "user")?.content ?? null;
    } else if (ollamaGenerate) {
      if (typeof body.prompt !== "string") return json(res, 400, { error: "prompt must be a string" }, done);
      record.prompt = body.prompt;
    } else {
      record.prompt = [...(body.messages ?? [])].reverse().find((m: any) => m.role === "user")?.content ?? null;
    }
    if (body.stream !== false) return json(res, 400, { error: "this test server only speaks stream: false" }, done);

    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    let reply: Reply;
    try {
      reply = await this.behaviour(record);
      if (reply.delayMs) await new Promise((r) => setTimeout(r, reply.delayMs));
    } finally {
      this.inFlight -= 1;
    }
    if (reply.hangUp) {
      req.socket.destroy();
      return done();
    }
    if (reply.streamBytes !== undefined) return streamBody(req, res, record, reply.streamBytes, done);
    const text = reply.text ?? defaultAnswer(record.prompt ?? "");
    const status = reply.status ?? 200;
    let payload: string | Buffer;
    if (reply.rawBody !== undefined) {
      payload = reply.rawBody;
    } else if (status >= 400) {
      payload = JSON.stringify(openai ? openaiError(`error ${status}`, "server_error") : { error: `error ${status}` });
    } else {
      const promptTokens = (record.prompt ?? "").split(/\s+/).filter(Boolean).length;
      const completionTokens = text.split(/\s+/).filter(Boolean).length;
      payload = JSON.stringify(
        openai
          ? openaiCompletion(body.model, reply.omitText ? undefined : text, promptTokens, completionTokens)
          : ollamaCompletion(body.model, reply.omitText ? undefined : text, promptTokens, completionTokens, ollamaChat),
      );
    }
    const buffer = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, "utf8");
    res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": String(buffer.length), ...reply.headers });
    if (reply.cutOff) {
      res.write(buffer.subarray(0, Math.floor(buffer.length / 2)));
      setTimeout(() => {
        req.socket.destroy();
        done();
      }, 20);
      return;
    }
    res.end(buffer, done);
  }
}

/** Wall-clock milliseconds with sub-millisecond resolution. */
export function hrNow(): number {
  return performance.timeOrigin + performance.now();
}

// 64 KiB: the size of a socket write Node handles without copying it around.
const STREAM_CHUNK = Buffer.alloc(64 * 1024, "a");

function streamBody(req: http.IncomingMessage, res: http.ServerResponse, record: RecordedRequest, total: number, done: () => void): void {
  res.writeHead(200, { "content-type": "application/json; charset=utf-8" });
  const head = Buffer.from('{"model":"test-model","response":"');
  record.bytesStreamed = 0;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    done();
  };
  const pump = () => {
    while (!finished && record.bytesStreamed! < total) {
      const piece = record.bytesStreamed === 0 ? head : STREAM_CHUNK.subarray(0, Math.min(STREAM_CHUNK.length, total - record.bytesStreamed!));
      record.bytesStreamed! += piece.length;
      if (!res.write(piece)) return void res.once("drain", pump);
    }
    if (!finished) res.end(finish);
  };
  req.socket.once("close", finish);
  pump();
}

function json(res: http.ServerResponse, status: number, body: unknown, done: () => void): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text, done);
}

function openaiError(message: string, type: string, code: string | null = null) {
  return { error: { message, type, param: null, code } };
}

function openaiCompletion(model: string, text: string | undefined, promptTokens: number, completionTokens: number) {
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
        finish_reason: "stop",
      },
    ],
    usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
  };
}

function ollamaCompletion(model: string, text: string | undefined, promptTokens: number, completionTokens: number, chat: boolean) {
  const timing = {
    done: true,
    done_reason: "stop",
    total_duration: 5_043_500_667,
    load_duration: 5_025_959,
    prompt_eval_count: promptTokens,
    prompt_eval_duration: 325_953_000,
    eval_count: completionTokens,
    eval_duration: 4_709_213_000,
  };
  const created_at = new Date().toISOString();
  if (chat) {
    return { model, created_at, ...(text === undefined ? {} : { message: { role: "assistant", content: text } }), ...timing };
  }
  return { model, created_at, ...(text === undefined ? {} : { response: text }), context: [1, 2, 3], ...timing };
}
