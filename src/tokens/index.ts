/**
 * Exact token counting for the encodings js-tiktoken ships, without its worst cases.
 *
 * js-tiktoken's `encode(text, [], [])` defines the counts we must reproduce, but it merges each
 * regex piece in time quadratic in the piece's length (a 100 KB run of one character took
 * 1,293 s), and V8's regex engine itself throws RangeError on runs of a few million letters
 * (5 M × "я") and spends 100-170 ms in one call on 10 MB of CJK or emoji. So this module keeps
 * js-tiktoken's pattern, rank table and merge order, and runs them differently:
 *
 * - the pre-tokenizer interprets the encoding's own `pat_str` with ECMAScript's matching rules,
 *   crossing long stretches of a multi-megabyte piece in single moves (see PreTokenizer);
 * - a piece found whole in the rank table counts 1, as in js-tiktoken;
 * - other pieces merge their lowest-ranked adjacent pair first, leftmost on ties — js-tiktoken's
 *   `bytePairMerge` scans left to right and only takes a strictly lower rank — short pieces by
 *   scanning, long ones through a priority queue over a linked list of parts, O(n log n);
 * - counting is async and yields to the event loop every few milliseconds.
 *
 * Memory: a piece longer than 128 bytes needs ~16 bytes per byte of typed arrays while it is
 * merged (160 MB for a 10 MB run of one character), plus the queue.
 *
 * Files: this one is the API; `encodings.ts` the encoding names (all that config needs);
 * `encoder.ts` loads an encoding; `pretokenizer.ts` the pattern interpreter; `bpe.ts` the
 * counter and the merging, with `merge_queue.ts` and `rank_table.ts`; `utf8.ts` the byte
 * forms of a piece; `slicer.ts` the yielding.
 */
import { BpeCounter } from "./bpe";
import { type EncodingName, isKnownEncoding, RANK_LOADERS } from "./encodings";

export type { EncodingName };
export { isKnownEncoding };

/** Counts tokens exactly as js-tiktoken's `new Tiktoken(ranks).encode(text, [], []).length`. */
export interface TokenCounter {
  readonly encoding: string;
  /** Special-token strings such as `<|endoftext|>` count as ordinary text; never throws on them. */
  count(text: string): Promise<number>;
}

const counters = new Map<EncodingName, TokenCounter>();

/** Returns the process-wide counter for this encoding, loading its ranks on first use only. */
export function getTokenCounter(encoding: string): TokenCounter {
  if (!isKnownEncoding(encoding)) {
    throw new Error(`Unknown token encoding "${encoding}" (expected one of: ${Object.keys(RANK_LOADERS).join(", ")})`);
  }
  let counter = counters.get(encoding);
  if (counter === undefined) {
    counter = new BpeCounter(encoding);
    counters.set(encoding, counter);
  }
  return counter;
}

/**
 * The pieces `text` is split into before merging, in order. Exported for tests, which compare
 * it with js-tiktoken's `text.matchAll(new RegExp(pat_str, "ug"))`.
 */
export async function preTokenize(encoding: string, text: string): Promise<string[]> {
  const counter = getTokenCounter(encoding) as BpeCounter;
  const pieces: string[] = [];
  await counter.forEachPiece(text, (start, end) => {
    pieces.push(text.slice(start, end));
  });
  return pieces;
}
