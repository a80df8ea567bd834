/** An encoding's rank table: token bytes to rank, and the cached rank of merged pairs. */
import { Slicer } from "./slicer";

// Direct-mapped cache of merged-pair ranks. Long degenerate pieces reuse a handful of pairs
// millions of times; 256 Ki slots (3 MB) also hold most of a long piece of varied text.
const PAIR_CACHE_BITS = 18;

/** The encoding's ranks, keyed by each token's bytes as a string of chars 0-255. */
export class RankTable {
  readonly byBytes = new Map<string, number>();
  readonly bytesOf: string[] = [];
  readonly byteRank = new Int32Array(256).fill(-1);
  // Rank of every two-byte sequence (-1: not a token), the first round of every merge.
  readonly bytePairRank = new Int32Array(1 << 16).fill(-1);
  maxTokenBytes = 0;
  private readonly cacheLeft = new Int32Array(1 << PAIR_CACHE_BITS).fill(-1);
  private readonly cacheRight = new Int32Array(1 << PAIR_CACHE_BITS);
  private readonly cacheRank = new Int32Array(1 << PAIR_CACHE_BITS);

  /** Parses js-tiktoken's `bpe_ranks` ("! <first rank> <base64 token>..." lines), yielding as it goes. */
  static async build(bpeRanks: string): Promise<RankTable> {
    const table = new RankTable();
    const slicer = new Slicer();
    // Walks the text with indexOf rather than split(" "): one line holds all 200 K tokens of
    // o200k, and splitting it at once would hold the event loop for ~20 ms. The fields are the
    // ones js-tiktoken's `line.split(" ")` yields: a marker, the first rank, base64 tokens.
    let tokens = 0;
    for (let lineStart = 0; lineStart < bpeRanks.length; ) {
      const lineEnd = indexOrLimit(bpeRanks, "\n", lineStart, bpeRanks.length);
      const markerEnd = indexOrLimit(bpeRanks, " ", lineStart, lineEnd);
      if (markerEnd < lineEnd) {
        let fieldStart = markerEnd + 1;
        let fieldEnd = indexOrLimit(bpeRanks, " ", fieldStart, lineEnd);
        const firstRank = Number.parseInt(bpeRanks.slice(fieldStart, fieldEnd), 10);
        for (let rank = firstRank; fieldEnd < lineEnd; rank++) {
          fieldStart = fieldEnd + 1;
          fieldEnd = indexOrLimit(bpeRanks, " ", fieldStart, lineEnd);
          const bytes = Buffer.from(bpeRanks.slice(fieldStart, fieldEnd), "base64").toString("latin1");
          table.byBytes.set(bytes, rank);
          table.bytesOf[rank] = bytes;
          if (bytes.length > table.maxTokenBytes) table.maxTokenBytes = bytes.length;
          if (++tokens % 4096 === 0 && slicer.due()) await slicer.yield();
        }
      }
      lineStart = lineEnd + 1;
    }
    for (let b = 0; b < 256; b++) {
      const rank = table.byBytes.get(String.fromCharCode(b));
      // js-tiktoken would emit `undefined` for a byte with no token. Every shipped encoding has
      // all 256, and the merge code relies on it.
      if (rank === undefined) throw new Error(`token ranks have no entry for byte ${b}`);
      table.byteRank[b] = rank;
    }
    for (let b1 = 0; b1 < 256; b1++) {
      for (let b2 = 0; b2 < 256; b2++) {
        table.bytePairRank[(b1 << 8) | b2] = table.byBytes.get(String.fromCharCode(b1, b2)) ?? -1;
      }
      if (slicer.due()) await slicer.yield();
    }
    return table;
  }

  /** Rank of the token spelled by token `left` then token `right` (`bytes` long together), or -1. */
  pairRank(left: number, right: number, bytes: number): number {
    if (bytes > this.maxTokenBytes) return -1;
    const slot = Math.imul(Math.imul(left, 0x9e3779b1) ^ right, 0x85ebca6b) >>> (32 - PAIR_CACHE_BITS);
    if (this.cacheLeft[slot] === left && this.cacheRight[slot] === right) return this.cacheRank[slot];
    const rank = this.byBytes.get(this.bytesOf[left] + this.bytesOf[right]) ?? -1;
    this.cacheLeft[slot] = left;
    this.cacheRight[slot] = right;
    this.cacheRank[slot] = rank;
    return rank;
  }
}

/** Index of `search` in text[from, limit), or limit when absent. */
function indexOrLimit(text: string, search: string, from: number, limit: number): number {
  const i = text.indexOf(search, from);
  return i < 0 || i > limit ? limit : i;
}
