/**
 * The runaway guards: what watching a stream costs per streamed chunk, and
 * how long a loop runs before it is cut.
 *
 * - Cost: the README and CHANGELOG files under node_modules/ as cl100k-ish
 *   word tokens, one NDJSON line each as Ollama streams them, read by the
 *   Ollama stream reader alone and by the reader with the repetition guard
 *   checking after every line (the client checks once per network read, so
 *   this is its worst case). Median of 5 passes.
 * - Time to cut: the real LLM client against the test LLM server streaming a
 *   loop at 20 tokens/s (the slowest rate the guard must handle within 10 s)
 *   and at 50 tokens/s, from the loop's first token to the client leaving.
 */
import { parseConfig } from "../src/config";
import { createLlmClient, LlmError } from "../src/llm/client";
import { ollamaProtocol } from "../src/llm/protocols";
import { RepetitionGuard } from "../src/llm/repetition_guard";
import { readmeCorpus } from "../test/support/corpus";
import { FakeLlm, wordTokens } from "../test/support/llm_server";
import { referenceTokens } from "../test/support/tiktoken";
import type { Check } from "./checks";
import { fmt, hrNow } from "./support";
import { median, printTable } from "./table";

const PASSES = 5;

function corpusTokens(): string[] {
  return readmeCorpus().flatMap(({ text }) => wordTokens(text));
}

/** ns per line: read each NDJSON line with the stream reader, and with the guard too. */
function costPerChunk(lines: Buffer[]): { reader: number; guarded: number } {
  const settings = parseConfig({ LLM_MODEL: "test-model" }).llm;
  const pass = (guarded: boolean) => {
    const reader = ollamaProtocol(settings).streamReader(settings.maxResponseBytes);
    const guard = guarded ? new RepetitionGuard() : null;
    const started = hrNow();
    for (const line of lines) {
      for (const delta of reader.push(line)) if (guard?.push(delta.text)) throw new Error("real text was cut");
    }
    return ((hrNow() - started) * 1e6) / lines.length;
  };
  const readerRuns: number[] = [];
  const guardedRuns: number[] = [];
  for (let i = 0; i < PASSES; i++) {
    readerRuns.push(pass(false));
    guardedRuns.push(pass(true));
  }
  return { reader: median(readerRuns), guarded: median(guardedRuns) };
}

interface LoopCase {
  name: string;
  tokens: string[];
  loopTokens: string[];
}

/** Seconds and tokens from the loop's first token to the cut, with the real client. */
async function timeToCut(llm: FakeLlm, loop: LoopCase, tokensPerSecond: number): Promise<{ seconds: number; tokens: number; message: string }> {
  const client = createLlmClient(parseConfig({ LLM_MODEL: "test-model" }).llm, llm.origin);
  llm.requests.length = 0;
  llm.behaviour = () => ({ tokens: loop.tokens, loopTokens: loop.loopTokens, tokenDelayMs: 1000 / tokensPerSecond });
  try {
    await client.generate("bench loop");
    throw new Error(`${loop.name}: the loop was not cut`);
  } catch (error) {
    if (!(error instanceof LlmError) || error.kind !== "repetition") throw error;
    const [call] = llm.generateRequests;
    await new Promise((r) => setTimeout(r, 50));
    return {
      seconds: (call.endedAtMs! - call.loopStartedAtMs!) / 1000,
      tokens: call.tokensStreamed - loop.tokens.length,
      message: error.message,
    };
  } finally {
    await client.close();
  }
}

export async function benchGuard(): Promise<Check[]> {
  const tokens = corpusTokens();
  const lines = tokens.map((t) => Buffer.from(JSON.stringify({ model: "test-model", created_at: "2026-12-01T01:00:00Z", response: t, done: false }) + "\n"));
  const cost = costPerChunk(lines);
  printTable(
    `Repetition guard: cost per streamed chunk (${fmt(tokens.length, 0)} word tokens of the node_modules/ READMEs and CHANGELOGs, one NDJSON line each; median of ${PASSES})`,
    ["reading a line", "ns per chunk", "ratio"],
    [
      ["Ollama stream reader alone", fmt(cost.reader, 0), "1.00×"],
      ["reader + repetition guard checking after every line", fmt(cost.guarded, 0), `${fmt(cost.guarded / cost.reader, 2)}×`],
      ["the guard's own share", fmt(cost.guarded - cost.reader, 0), ""],
    ],
  );

  const intro = referenceTokens("Claro, aquí tienes lo que pediste:\n\n");
  const paragraph =
    "El sistema procesa cada solicitud en orden, registra su resultado y continúa con la siguiente sin detenerse, " +
    "de modo que la cola avanza de forma constante durante toda la noche, y al amanecer el informe resume lo que pasó.\n";
  const cases: LoopCase[] = [
    { name: '"= " for ever', tokens: intro, loopTokens: [" ="] },
    { name: "one line of ~30 tokens for ever", tokens: intro, loopTokens: referenceTokens("El resultado final es 42, como ya se explicó antes en la respuesta anterior; véase el paso 3 (arriba).\n") },
    { name: `a paragraph of ${paragraph.length} characters (${referenceTokens(paragraph).length} tokens) for ever`, tokens: intro, loopTokens: referenceTokens(paragraph) },
  ];
  const llm = await FakeLlm.start();
  const rows: string[][] = [];
  const checks: Check[] = [];
  try {
    for (const c of cases) {
      for (const rate of [20, 50]) {
        const cut = await timeToCut(llm, c, rate);
        rows.push([c.name, String(rate), fmt(cut.seconds, 2), String(cut.tokens), cut.message]);
        if (rate === 20 && c !== cases[2]) {
          checks.push({ target: `a loop (${c.name}) at 20 tokens/s cut within 10 s of its start`, measured: `${fmt(cut.seconds, 2)} s`, met: cut.seconds <= 10 });
        }
        if (c === cases[2]) {
          const copies = cut.tokens / c.loopTokens.length;
          checks.push({ target: `a paragraph loop at ${rate} tokens/s cut before the end of its 4th copy`, measured: `${fmt(copies, 2)} copies`, met: copies < 4 });
        }
      }
    }
  } finally {
    await llm.stop();
  }
  printTable("Repetition guard: from a loop's first token to the cut (real client, test LLM server streaming Ollama NDJSON)", ["loop", "tokens/s", "seconds", "loop tokens sent", "message"], rows);
  return checks;
}
