/** Plain js-tiktoken, the reference the stored token counts must equal. */
import type * as JsTiktoken from "js-tiktoken" with { "resolution-mode": "import" };

// js-tiktoken ships CommonJS builds too ("require" in its exports map), but
// declares only ES-module types, so the types are imported apart.
const jsTiktoken: typeof JsTiktoken = require("js-tiktoken");
const encoders = new Map<string, JsTiktoken.Tiktoken>();

/** js-tiktoken's own count, special-token text counted as ordinary text. */
export function referenceCount(text: string, encoding: JsTiktoken.TiktokenEncoding = "cl100k_base"): number {
  let encoder = encoders.get(encoding);
  if (!encoder) {
    encoder = jsTiktoken.getEncoding(encoding);
    encoders.set(encoding, encoder);
  }
  return encoder.encode(text, [], []).length;
}

/** The text as js-tiktoken's tokens, each decoded: how a model would stream it (ASCII text: no token splits a character). */
export function referenceTokens(text: string, encoding: JsTiktoken.TiktokenEncoding = "cl100k_base"): string[] {
  referenceCount("", encoding);
  const encoder = encoders.get(encoding)!;
  return encoder.encode(text, [], []).map((token) => encoder.decode([token]));
}
