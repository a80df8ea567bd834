import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { getTokenCounter, isKnownEncoding, preTokenize } from "../src/tokens/index";
import { prng } from "./support/prng";

// js-tiktoken is the reference: our counts must equal `encode(text, [], []).length`.
interface Reference {
  encode(text: string, allowedSpecial?: string[] | "all", disallowedSpecial?: string[] | "all"): number[];
}

// The ranks modules are ES modules, so they are loaded with import() (a static import would
// compile to require()).
const REFERENCE_RANKS = {
  cl100k_base: () => import("js-tiktoken/ranks/cl100k_base"),
  o200k_base: () => import("js-tiktoken/ranks/o200k_base"),
  p50k_base: () => import("js-tiktoken/ranks/p50k_base"),
  p50k_edit: () => import("js-tiktoken/ranks/p50k_edit"),
  r50k_base: () => import("js-tiktoken/ranks/r50k_base"),
  gpt2: () => import("js-tiktoken/ranks/gpt2"),
};
type TestedEncoding = keyof typeof REFERENCE_RANKS;

const references = new Map<TestedEncoding, Promise<{ tiktoken: Reference; patStr: string }>>();
function reference(encoding: TestedEncoding): Promise<{ tiktoken: Reference; patStr: string }> {
  let loading = references.get(encoding);
  if (loading === undefined) {
    loading = (async () => {
      const { Tiktoken } = await import("js-tiktoken/lite");
      const ranks = (await REFERENCE_RANKS[encoding]()).default;
      return { tiktoken: new Tiktoken(ranks), patStr: ranks.pat_str };
    })();
    references.set(encoding, loading);
  }
  return loading;
}


function base64Of(byteCount: number, seed: number): string {
  const random = prng(seed);
  const bytes = Buffer.alloc(byteCount);
  for (let i = 0; i < byteCount; i++) bytes[i] = Math.floor(random() * 256);
  return bytes.toString("base64");
}

const CORPUS: Record<string, string> = {
  "empty text": "",
  "Spanish prose with accents":
    "El niño comió piña en la mañana; ¿qué pasó después? ¡Increíble! El pingüino y el árbol del corazón.\n" +
    "Según la información, la canción se escuchó en Mérida, Querétaro y Ciudad de México (CDMX) — ¡olé!",
  "English prose with contractions":
    "I'm sure they'll say it's John's; we've seen you'd DON'T and WE'LL. It's 9:30 a.m., isn't it?\n\n" +
    "The quick brown fox jumps over the lazy dog.  Two  spaces.   Three.",
  "TypeScript code":
    "export async function main(argv: string[]): Promise<number> {\n" +
    "\tconst opts = { retries: 3, timeoutMs: 30_000 } as const;\r\n" +
    "    for (let i = 0; i < argv.length; i++) {\n        if (argv[i] === '--help') return usage(); // early exit\n    }\n" +
    "    return items.map((x) => x * 2).filter(Boolean).length >>> 0;\n}\n",
  JSON: JSON.stringify({ id: 42, name: "Ñandú", tags: ["a", "b"], nested: { ok: true, ratio: 0.125, n: null } }, null, 2),
  base64: base64Of(600, 1),
  URLs: "https://example.com/path/to/page?query=1&x=%20y#frag http://localhost:8080/api/v1/users/123 mailto:a@b.mx ftp://x.y/z.tar.gz",
  "emoji and ZWJ sequences": "👨‍👩‍👧‍👦 family, 👍🏽 thumbs, 🏳️‍🌈 flag, ❤️ heart, 🇲🇽 México, 🧑🏻‍💻 coder 😀😃😄",
  CJK: "日本語のテキストです。中文文本，包含标点符号！한국어 텍스트도 있습니다。漢字かなカナ",
  "lone surrogates": "a\ud800b \udc00 x\ud800\ud800\udc00y \udc00\ud800 end\ud83d",
  "special-token strings as plain text": "<|endoftext|> hello <|fim_prefix|>x<|fim_middle|>y<|fim_suffix|> <|endofprompt|><|endoftext|>",
  "whitespace and newline runs": "a     b\t\t\tc\n\n\n\nd\r\n\r\n\r\ne  \n  \n  f\u00a0\u00a0g\u3000h \u2028 i\f\v j     \n",
  "digit runs": "1234567890123 3.14159 1,000,000 ١٢٣٤٥ １２３４ Ⅻ 007 2024-01-31T23:59:59Z",
  "mixed scripts": "Привет, мир! Γειά σου κόσμε. שלום עולם. مرحبا بالعالم. नमस्ते दुनिया. ǅemal ʰi",
};

// Runs of one character (or one short token). Lengths stay small enough for js-tiktoken, whose
// merge is quadratic (1,000 "a" takes it ~70 ms); the bytes per run are capped instead of the
// characters, since its cost follows bytes.
const RUN_UNITS = ["a", " ", "!", "\n", "0", "é", "中", "😀", "\ud800", "ab", "-=", "\t"];
const RUN_LENGTHS = [2, 3, 7, 16, 31, 64, 127, 128, 129, 257, 600, 1000];
const MAX_RUN_BYTES = 1000;

const RANDOM_ALPHABET = [
  "a", "e", "s", "t", "A", "Z", "'", "'s", "'re", " ", "  ", "\t", "\n", "\r\n", "0", "42", "!", "?", "/", "-", "_",
  "é", "ñ", "É", "\u0301", "中", "文", "😀", "👨‍👩", "\ud800", "\udc00", "\u00a0", "я", "Я", "<|endoftext|>", "https://x.mx/",
];

function randomText(random: () => number, maxUnits: number): string {
  let text = "";
  const target = Math.floor(random() * maxUnits);
  while (text.length < target) {
    const unit = RANDOM_ALPHABET[Math.floor(random() * RANDOM_ALPHABET.length)];
    text += random() < 0.2 ? unit.repeat(1 + Math.floor(random() * 30)) : unit;
  }
  return text;
}

async function assertSameCount(encoding: TestedEncoding, text: string, label: string): Promise<void> {
  const { tiktoken } = await reference(encoding);
  const expected = tiktoken.encode(text, [], []).length;
  const actual = await getTokenCounter(encoding).count(text);
  assert.equal(actual, expected, `${encoding}: ${label} (${text.length} code units): ${JSON.stringify(text.slice(0, 60))}`);
}

for (const encoding of ["cl100k_base", "o200k_base"] as const) {
  describe(`${encoding} counts equal js-tiktoken's encode(text, [], []).length`, () => {
    for (const [label, text] of Object.entries(CORPUS)) {
      test(label, async () => {
        await assertSameCount(encoding, text, label);
      });
    }

    test("long runs of one character or one repeated token", async () => {
      for (const unit of RUN_UNITS) {
        const unitBytes = Buffer.byteLength(unit, "utf8");
        for (const length of RUN_LENGTHS) {
          if (length * unitBytes > MAX_RUN_BYTES) continue;
          const run = unit.repeat(length);
          await assertSameCount(encoding, run, `run of ${length} × ${JSON.stringify(unit)}`);
          // With neighbours too, where they can join the run's first or last piece; only for
          // the shorter runs, to keep the file's run time down.
          if (length <= 257) await assertSameCount(encoding, ` ${run}x`, `run of ${length} × ${JSON.stringify(unit)} between text`);
        }
      }
    });

    test("seeded random text mixing all of the above", async () => {
      const random = prng(encoding === "cl100k_base" ? 7 : 8);
      for (let i = 0; i < 300; i++) await assertSameCount(encoding, randomText(random, 300), `random #${i}`);
    });

    test("pieces equal the native RegExp split of pat_str", async () => {
      const { patStr } = await reference(encoding);
      const random = prng(9);
      const texts = [...Object.values(CORPUS), ...Array.from({ length: 300 }, () => randomText(random, 300))];
      // Runs longer than the pre-tokenizer's long-stretch index threshold (512 code units).
      for (const unit of ["a", "A", " ", "\n", "!", "中", "😀", "\ud800", "\u0301", "7"]) {
        texts.push(unit.repeat(3000), `x ${unit.repeat(2000)}\n${unit.repeat(1500)}y`);
      }
      for (const text of texts) {
        const expected = text.match(new RegExp(patStr, "gu")) ?? [];
        assert.deepEqual(await preTokenize(encoding, text), expected, JSON.stringify(text.slice(0, 60)));
      }
    });
  });
}

describe("encoding names", () => {
  test("every js-tiktoken encoding is known, anything else is not", () => {
    for (const name of ["cl100k_base", "o200k_base", "p50k_base", "p50k_edit", "r50k_base", "gpt2"]) {
      assert.equal(isKnownEncoding(name), true, name);
    }
    for (const name of ["", "cl100k", "CL100K_BASE", "toString", "__proto__"]) assert.equal(isKnownEncoding(name), false, name);
  });

  test("the counter is created once per encoding", () => {
    assert.equal(getTokenCounter("cl100k_base"), getTokenCounter("cl100k_base"));
    assert.equal(getTokenCounter("o200k_base").encoding, "o200k_base");
  });

  test("an unknown encoding is refused with the accepted names", () => {
    assert.throws(() => getTokenCounter("cl100k"), /Unknown token encoding "cl100k".*cl100k_base/);
  });

});

describe("p50k_base, p50k_edit, r50k_base and gpt2 counts equal js-tiktoken's", () => {
  test("corpus, runs and random text", async () => {
    const random = prng(10);
    const texts = [...Object.values(CORPUS), "a".repeat(700), " ".repeat(300) + "x", ...Array.from({ length: 50 }, () => randomText(random, 300))];
    for (const encoding of ["p50k_base", "p50k_edit", "r50k_base", "gpt2"] as const) {
      for (const text of texts) await assertSameCount(encoding, text, "corpus");
    }
  });
});

describe("counting yields to the event loop", () => {
  test("a 1 MB run of one character is counted while a 10 ms timer keeps firing", async () => {
    const counter = getTokenCounter("cl100k_base");
    await counter.count("warm up: loads the ranks before timing starts");
    const text = "a".repeat(1 << 20);
    let ticks = 0;
    let lastTickMs = performance.now();
    let maxGapMs = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      maxGapMs = Math.max(maxGapMs, now - lastTickMs);
      lastTickMs = now;
      ticks++;
    }, 10);
    try {
      const tokens = await counter.count(text);
      maxGapMs = Math.max(maxGapMs, performance.now() - lastTickMs);
      // js-tiktoken gives n / 8 for every run of 8k "a" it can finish (2,048 → 256): cl100k's
      // "aaaaaaaa" token, repeated. It cannot finish this one, so we check the pattern holds.
      assert.equal(tokens, 131072);
    } finally {
      clearInterval(timer);
    }
    // A count that never yields lets no tick through at all (it takes ~100 ms here, ~10 ticks when
    // it yields); one that yields only now and then lets one or two through.
    assert.ok(ticks >= 3, `the timer fired only ${ticks} times during the count`);
    // Loose on purpose: a loaded machine or a full garbage collection can pause a few hundred ms.
    assert.ok(maxGapMs < 1000, `the event loop was blocked for ${maxGapMs.toFixed(0)} ms`);
  });
});
