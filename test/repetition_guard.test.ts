/**
 * The repetition guard on its own: it must never cut real text, and it must
 * cut a loop within seconds. Answers are streamed into it token by token
 * (cl100k tokens, as a model emits them; one check per token, the strictest
 * case: the client checks once per network read).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { loopSpanChars, MAX_BLOCK_CHARS, RepetitionGuard, type Loop } from "../src/llm/repetition_guard";
import { readmeCorpus } from "./support/corpus";
import { wordTokens } from "./support/llm_server";
import { prng } from "./support/prng";
import { referenceTokens } from "./support/tiktoken";

/** Streams these tokens through a fresh guard; the index of the token at which it cut, and the loop. */
function stream(tokens: string[]): { cutAt: number; loop: Loop } | null {
  const guard = new RepetitionGuard();
  for (let i = 0; i < tokens.length; i++) {
    const loop = guard.push(tokens[i]);
    if (loop) return { cutAt: i, loop };
  }
  return null;
}

/** A prefix, then a block repeated `copies` times, as tokens; and where the loop starts (in tokens). */
function looping(prefix: string, block: string, copies: number): { tokens: string[]; loopStart: number } {
  const head = referenceTokens(prefix);
  // Tokenised as one text, as a model would produce it: tokens may straddle copies.
  const all = referenceTokens(prefix + block.repeat(copies));
  return { tokens: all, loopStart: head.length - 1 };
}

describe("the repetition guard never cuts real text", () => {
  test("every README.md and CHANGELOG.md under node_modules/, streamed word by word: none is cut", () => {
    const files = readmeCorpus();
    assert.ok(files.length >= 100, `a real corpus: ${files.length} files`);
    let characters = 0;
    const cut: string[] = [];
    for (const { file, text } of files) {
      characters += text.length;
      const result = stream(wordTokens(text));
      if (result) cut.push(`${file} at token ${result.cutAt}: ${JSON.stringify(result.loop.block.slice(0, 80))}`);
    }
    assert.deepEqual(cut, [], `cut ${cut.length} of ${files.length} files`);
    assert.ok(characters > 1_000_000, `${characters} characters streamed`);
  });

  const cases: [string, string][] = [
    ["a poem with a refrain repeated 4 times", Array.from({ length: 4 }, (_, i) =>
      `Verso ${i + 1}: la noche ${["cae", "sigue", "pasa", "acaba"][i]} sobre el mar,\ny el faro ${["duerme", "mira", "calla", "guía"][i]} al pescador.\n` +
      "Y canta, canta, canta el viento,\ny canta, canta, canta el mar.\n\n").join("")],
    ["a markdown table of 500 rows that differ in their numbers", "| id | valor | estado |\n|---|---|---|\n" +
      Array.from({ length: 500 }, (_, i) => `| ${i + 1} | ${(i * 7919) % 1000} | ok |`).join("\n")],
    ["the same short line 3 times", "No lo sé.\nNo lo sé.\nNo lo sé.\n"],
    ["the same long line 3 times", "Esta es una línea bastante larga que el modelo repite por énfasis, y nada más.\n".repeat(3)],
    ['"ja" 20 times', "ja".repeat(20)],
    ["a line of 120 dashes", "-".repeat(120) + "\nFin."],
    ["a code block with the same closing line 8 times", "if (a) {\n" + "  if (b) {\n".repeat(7) + "    x();\n" + "  }\n".repeat(8)],
  ];
  for (const [name, text] of cases) {
    test(name, () => {
      assert.equal(stream(referenceTokens(text)), null);
    });
  }
});

describe("the repetition guard cuts a loop within seconds", () => {
  // Within 10 s at 20 tokens a second.
  const TOKENS_IN_10_S_AT_20_PER_S = 200;

  test('"= " for ever: cut within 10 s of the loop starting at 20 tokens a second', () => {
    const { tokens, loopStart } = looping("Aquí está la tabla que pediste:\n\n", "= ", 1000);
    const result = stream(tokens);
    assert.ok(result, "cut");
    assert.ok(result.cutAt - loopStart <= TOKENS_IN_10_S_AT_20_PER_S, `cut ${result.cutAt - loopStart} tokens into the loop`);
    assert.match(result.loop.block, /^(= | =)$/);
  });

  test("one line of 30 tokens for ever: cut within 10 s", () => {
    const line = "El resultado final es 42, como ya se explicó antes en la respuesta anterior; véase el paso 3 (arriba).\n";
    assert.ok(Math.abs(referenceTokens(line).length - 30) <= 3, `${referenceTokens(line).length} tokens`);
    const { tokens, loopStart } = looping("Resumen:\n", line, 100);
    const result = stream(tokens);
    assert.ok(result);
    assert.ok(result.cutAt - loopStart <= TOKENS_IN_10_S_AT_20_PER_S, `cut ${result.cutAt - loopStart} tokens into the loop`);
    assert.equal(result.loop.block.length, line.length);
  });

  test("every block of up to 100 characters of words, looped after a real paragraph: cut within 10 s", () => {
    const random = prng(7);
    const words = "la el de que y en un por con no una su para es al lo como más pero sus le ya o este sí porque esta entre cuando muy sin sobre también me hasta hay donde quien desde todo nos durante todos uno les ni contra otros ese eso ante ellos".split(" ");
    const worst = { tokens: 0, block: "" };
    for (let n = 0; n < 300; n++) {
      let block = "";
      const wanted = 1 + Math.floor(random() * 100);
      while (block.length < wanted) block += (block === "" ? "" : " ") + words[Math.floor(random() * words.length)];
      block = block.slice(0, wanted) + (random() < 0.5 ? " " : ".\n");
      if (block.length > 100) block = block.slice(block.length - 100);
      const { tokens, loopStart } = looping("Esta es la respuesta a tu pregunta, con un poco de contexto.\n", block, Math.ceil(2000 / block.length));
      const result = stream(tokens);
      assert.ok(result, `cut: ${JSON.stringify(block)}`);
      const into = result.cutAt - loopStart;
      if (into > worst.tokens) Object.assign(worst, { tokens: into, block });
    }
    assert.ok(worst.tokens <= TOKENS_IN_10_S_AT_20_PER_S, `worst: ${worst.tokens} tokens for ${JSON.stringify(worst.block)}`);
  });

  for (const length of [100, 400, 1000, MAX_BLOCK_CHARS]) {
    test(`a paragraph of ${length} characters repeated verbatim: cut before the end of its fourth copy`, () => {
      const random = prng(length);
      const letters = "abcdefghijklmnopqrstuvwxyz";
      let paragraph = "";
      while (paragraph.length < length - 1) {
        const word = Array.from({ length: 2 + Math.floor(random() * 8) }, () => letters[Math.floor(random() * 26)]).join("");
        paragraph += (paragraph === "" ? "" : " ") + word;
      }
      paragraph = paragraph.slice(0, length - 1) + "\n";
      const prefix = "Te lo explico:\n";
      const { tokens } = looping(prefix, paragraph, 10);
      const result = stream(tokens);
      assert.ok(result, "cut");
      const charsAtCut = tokens.slice(0, result.cutAt + 1).join("").length - prefix.length;
      assert.ok(charsAtCut < 4 * length, `cut at ${charsAtCut} characters into the loop, copy ${(charsAtCut / length).toFixed(2)}`);
      assert.ok(charsAtCut >= 3 * length, "and not before three copies");
    });
  }

  test("the span that makes a loop is at least 200 characters, 4 copies of a short block, 3.5 of a paragraph", () => {
    assert.deepEqual([1, 2, 49, 50, 99, 100, 2000].map(loopSpanChars), [200, 200, 200, 200, 396, 350, 7000]);
  });
});
