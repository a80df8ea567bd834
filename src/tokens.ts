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
 */
import { performance } from "node:perf_hooks";

export type EncodingName = "cl100k_base" | "o200k_base" | "p50k_base" | "r50k_base" | "gpt2" | "p50k_edit";

/** What a js-tiktoken ranks module exports (its `TiktokenBPE`). */
interface RanksFile {
  pat_str: string;
  special_tokens: Record<string, number>;
  bpe_ranks: string;
}

// Written out one by one so TypeScript checks each path against js-tiktoken's exports map and
// only the requested encoding is ever loaded (o200k alone is a 2.3 MB module). The ranks modules
// are ES modules, hence import() rather than require().
const RANK_LOADERS: Record<EncodingName, () => Promise<{ default: RanksFile }>> = {
  cl100k_base: () => import("js-tiktoken/ranks/cl100k_base"),
  o200k_base: () => import("js-tiktoken/ranks/o200k_base"),
  p50k_base: () => import("js-tiktoken/ranks/p50k_base"),
  p50k_edit: () => import("js-tiktoken/ranks/p50k_edit"),
  r50k_base: () => import("js-tiktoken/ranks/r50k_base"),
  gpt2: () => import("js-tiktoken/ranks/gpt2"),
};

/** True if `name` is an encoding this module can count with (used by config validation). */
export function isKnownEncoding(name: string): name is EncodingName {
  return Object.prototype.hasOwnProperty.call(RANK_LOADERS, name);
}

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

// ---------------------------------------------------------------------------------------------
// Yielding

// Counting yields once it has held the event loop this long. The limit we promise is 50 ms; the
// longest steps that cannot be split (allocating a 40 MB array for a 10 MB piece, and the
// garbage collection that can set off) take up to ~25 ms here, so 5 ms slices leave a margin.
// A yield costs ~0.1 ms, so this gives up about 2% of throughput.
const SLICE_MS = 5;

/** Tracks how long the current synchronous stretch has run and yields when it is too long. */
class Slicer {
  private sliceStartMs = performance.now();

  due(): boolean {
    return performance.now() - this.sliceStartMs >= SLICE_MS;
  }

  async yield(): Promise<void> {
    // setImmediate, not a resolved promise: timers, I/O and signal handlers get to run.
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.sliceStartMs = performance.now();
  }
}

// ---------------------------------------------------------------------------------------------
// Counting

// Pieces up to this many UTF-8 bytes merge by plain scanning (quadratic but allocation-free);
// longer ones use the priority queue. 128 bytes is the longest token in every shipped encoding.
const SMALL_PIECE_BYTES = 128;

// The clock is read every this many pieces / merge steps (each at most a few microseconds of
// work), so reading it costs little and a slice overruns SLICE_MS by well under a millisecond.
const PIECES_PER_CLOCK_CHECK = 64;
const MERGE_STEPS_PER_CLOCK_CHECK = 1024;

class BpeCounter implements TokenCounter {
  constructor(readonly encoding: EncodingName) {}

  async count(text: string): Promise<number> {
    const { ranks } = await loadEncoder(this.encoding);
    let tokens = 0;
    const countLarge = async (start: number, end: number, slicer: Slicer): Promise<void> => {
      tokens += await countLargePiece(await utf8Bytes(text, start, end, slicer), ranks, slicer);
    };
    await this.forEachPiece(text, (start, end, slicer) => {
      if (end - start <= SMALL_PIECE_BYTES) {
        const bytes = latin1Bytes(text, start, end);
        if (bytes.length <= SMALL_PIECE_BYTES) {
          tokens += countSmallPiece(bytes, ranks);
          return undefined;
        }
      }
      return countLarge(start, end, slicer);
    });
    return tokens;
  }

  /** Calls `visit` for each piece in order; visit may be async only when it has to be. */
  async forEachPiece(text: string, visit: (start: number, end: number, slicer: Slicer) => Promise<void> | void): Promise<void> {
    const { splitter } = await loadEncoder(this.encoding);
    const slicer = new Slicer();
    const index = await splitter.indexText(text, slicer);
    let pieces = 0;
    let pos = 0;
    while (pos < text.length) {
      const end = splitter.matchAt(text, pos, index);
      if (end <= pos) {
        // No piece, or an empty one, starts here: like matchAll, step one code point. js-tiktoken
        // counts nothing for it. The shipped patterns match every code point, so this is moot.
        pos += codePointWidth(text, pos);
        continue;
      }
      const pending = visit(pos, end, slicer);
      if (pending !== undefined) await pending;
      pos = end;
      if (++pieces % PIECES_PER_CLOCK_CHECK === 0 && slicer.due()) await slicer.yield();
    }
  }
}

/** The piece's UTF-8 bytes as a string of chars 0-255, the form the rank table is keyed by. */
function latin1Bytes(text: string, start: number, end: number): string {
  for (let i = start; i < end; i++) {
    // Lone surrogates become EF BF BD here, exactly as in js-tiktoken's TextEncoder.
    if (text.charCodeAt(i) >= 0x80) return Buffer.from(text.slice(start, end), "utf8").toString("latin1");
  }
  return text.slice(start, end);
}

// Long pieces are UTF-8 encoded this many code units at a time (~1-3 ms each).
const ENCODE_CHUNK_UNITS = 1 << 20;

/** UTF-8 bytes of text[start, end), encoded in chunks with yields in between. */
async function utf8Bytes(text: string, start: number, end: number, slicer: Slicer): Promise<Uint8Array> {
  const piece = text.slice(start, end);
  const bytes = Buffer.allocUnsafe(Buffer.byteLength(piece, "utf8"));
  let written = 0;
  for (let from = 0; from < piece.length; ) {
    let to = Math.min(piece.length, from + ENCODE_CHUNK_UNITS);
    // Never split a surrogate pair: each half alone would encode as U+FFFD.
    if (to < piece.length && codePointWidth(piece, to - 1) === 2) to++;
    written += bytes.write(piece.slice(from, to), written, "utf8");
    from = to;
    if (slicer.due()) await slicer.yield();
  }
  if (written !== bytes.length) throw new Error(`UTF-8 encoding wrote ${written} of ${bytes.length} bytes`);
  return bytes;
}

function codePointWidth(text: string, pos: number): number {
  const cu = text.charCodeAt(pos);
  if (cu >= 0xd800 && cu < 0xdc00 && pos + 1 < text.length) {
    const lo = text.charCodeAt(pos + 1);
    if (lo >= 0xdc00 && lo < 0xe000) return 2;
  }
  return 1;
}

// Scratch space for countSmallPiece. It never yields, so concurrent counts cannot interleave here.
const smallTok = new Int32Array(SMALL_PIECE_BYTES + 1);
const smallStart = new Int32Array(SMALL_PIECE_BYTES + 1);
const smallPairRank = new Int32Array(SMALL_PIECE_BYTES + 1);

/** Tokens in one short piece: whole-piece lookup, else the reference merge order by scanning. */
function countSmallPiece(bytes: string, ranks: RankTable): number {
  const n = bytes.length;
  if (n <= ranks.maxTokenBytes && ranks.byBytes.has(bytes)) return 1;
  if (n <= 1) return n;
  const tok = smallTok;
  const start = smallStart;
  const pairRank = smallPairRank;
  for (let i = 0; i < n; i++) {
    tok[i] = ranks.byteRank[bytes.charCodeAt(i)];
    start[i] = i;
  }
  start[n] = n;
  for (let i = 0; i + 1 < n; i++) {
    pairRank[i] = ranks.bytePairRank[(bytes.charCodeAt(i) << 8) | bytes.charCodeAt(i + 1)];
  }
  let parts = n;
  for (;;) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < parts; i++) {
      const r = pairRank[i];
      // Strictly lower only, so the leftmost of equal ranks wins, as in js-tiktoken.
      if (r >= 0 && r < bestRank) {
        bestRank = r;
        best = i;
      }
    }
    if (best < 0) return parts;
    // Merge parts best and best+1: drop entry best+1 from each array.
    tok[best] = bestRank;
    for (let i = best + 1; i + 1 < parts; i++) {
      tok[i] = tok[i + 1];
      pairRank[i] = pairRank[i + 1];
    }
    for (let i = best + 1; i < parts; i++) start[i] = start[i + 1];
    parts--;
    if (best + 1 < parts) pairRank[best] = ranks.pairRank(tok[best], tok[best + 1], start[best + 2] - start[best]);
    if (best > 0) pairRank[best - 1] = ranks.pairRank(tok[best - 1], tok[best], start[best + 1] - start[best - 1]);
  }
}

/**
 * Tokens in one long piece. Parts form a doubly linked list indexed by their first byte;
 * `pairRank[a]` is the rank of part a joined with the next part (-1: not a token, or a is
 * gone), and the queue hands out the lowest (rank, position) first. ~16 bytes of typed arrays
 * per input byte plus the queue.
 */
async function countLargePiece(bytes: Uint8Array, ranks: RankTable, slicer: Slicer): Promise<number> {
  const n = bytes.length;
  if (n <= ranks.maxTokenBytes && ranks.byBytes.has(Buffer.from(bytes).toString("latin1"))) return 1;
  // Allocated one at a time with a chance to yield in between: 40 MB each for a 10 MB piece,
  // and each big allocation can set off a garbage collection.
  const arrays: Int32Array[] = [];
  for (let i = 0; i < 4; i++) {
    if (slicer.due()) await slicer.yield();
    arrays.push(new Int32Array(n));
  }
  const [tok, next, prev, pairRank] = arrays;
  const queue = new MergeQueue();
  for (let i = 0; i < n; i++) {
    tok[i] = ranks.byteRank[bytes[i]];
    next[i] = i + 1;
    prev[i] = i - 1;
    const r = i + 1 < n ? ranks.bytePairRank[(bytes[i] << 8) | bytes[i + 1]] : -1;
    pairRank[i] = r;
    if (r >= 0) queue.push(r, i);
    if ((i & 0xffff) === 0 && slicer.due()) await slicer.yield();
  }

  // Re-derives the pair starting at part a after a neighbour changed.
  const refresh = (a: number): void => {
    const b = next[a];
    const r = b < n ? ranks.pairRank(tok[a], tok[b], next[b] - a) : -1;
    if (r === pairRank[a]) return;
    pairRank[a] = r;
    if (r >= 0) queue.push(r, a);
  };

  let merges = 0;
  for (let steps = 1; ; steps++) {
    if (steps % MERGE_STEPS_PER_CLOCK_CHECK === 0 && slicer.due()) await slicer.yield();
    const a = queue.pop(pairRank);
    if (a === -1) break;
    if (a < 0) continue;
    merges++;
    const b = next[a];
    const c = next[b];
    tok[a] = pairRank[a];
    pairRank[b] = -1; // b is absorbed; its queue entries are now stale
    next[a] = c;
    if (c < n) prev[c] = a;
    refresh(a);
    if (prev[a] >= 0) refresh(prev[a]);
  }
  return n - merges;
}

/**
 * Priority queue of (rank, position) with lazy deletion: an entry is current while
 * `pairRank[position]` still equals its rank. A pair's bytes only ever grow, so a position never
 * returns to a rank it had, and stale entries are never mistaken for current ones.
 *
 * One bucket per rank, plus a small heap of the ranks whose buckets are non-empty. Merges mostly
 * create pairs left to right, so a bucket's positions usually arrive in ascending order: those go
 * into a typed array read from the front, the others into a per-bucket heap. The common case thus
 * stays sequential in memory and outside the garbage-collected heap, which is what makes
 * multi-megabyte pieces fast.
 */
class MergeQueue {
  private readonly buckets: (Bucket | undefined)[] = []; // by rank
  private readonly rankHeap = new IntHeap();

  push(rank: number, position: number): void {
    let bucket = this.buckets[rank];
    if (bucket === undefined) {
      bucket = new Bucket();
      this.buckets[rank] = bucket;
    }
    if (bucket.isEmpty()) this.rankHeap.push(rank);
    bucket.push(position);
  }

  /**
   * Removes and returns the position of the lowest current (rank, position): -1 when none is
   * left, -2 after skipping STALE_PER_POP stale entries (call again, after checking the clock).
   */
  pop(pairRank: Int32Array): number {
    let skipped = 0;
    while (this.rankHeap.size > 0) {
      const rank = this.rankHeap.peek();
      const bucket = this.buckets[rank]!;
      while (!bucket.isEmpty()) {
        const position = bucket.shift();
        if (pairRank[position] === rank) {
          if (bucket.isEmpty()) this.rankHeap.pop();
          return position;
        }
        if (++skipped === STALE_PER_POP) {
          if (bucket.isEmpty()) this.rankHeap.pop();
          return -2;
        }
      }
      this.rankHeap.pop();
    }
    return -1;
  }
}

// A bucket can hold millions of stale entries (every "aaa" pair of a run of "a" goes stale once
// "aaaa" forms), so one pop skips at most this many before letting the caller read the clock.
const STALE_PER_POP = 4096;

// Blocks of a bucket's queue grow with the queue up to this many entries (256 KB), so a bucket
// holding millions of positions never copies them, and most buckets, holding a few, stay small.
const MAX_BLOCK_ENTRIES = 1 << 16;
const NO_BLOCK = new Int32Array(0);

/** One rank's positions: an ascending FIFO of typed-array blocks, plus a heap for stragglers. */
class Bucket {
  private readonly blocks: Int32Array[] = [];
  private first = 0; // block being read
  private readAt = 0; // next entry to read in blocks[first]
  private writeAt = 0; // next free entry in the last block
  private queued = 0; // entries in the blocks
  private newest = 0; // last position queued, the largest in the blocks
  private readonly spill = new IntHeap();

  isEmpty(): boolean {
    return this.queued === 0 && this.spill.size === 0;
  }

  push(position: number): void {
    if (this.queued > 0 && position < this.newest) {
      this.spill.push(position);
      return;
    }
    let block = this.blocks[this.blocks.length - 1];
    if (block === undefined || this.writeAt === block.length) {
      block = new Int32Array(Math.min(MAX_BLOCK_ENTRIES, Math.max(16, this.queued)));
      this.blocks.push(block);
      this.writeAt = 0;
    }
    block[this.writeAt++] = position;
    this.queued++;
    this.newest = position;
  }

  shift(): number {
    const spill = this.spill;
    if (spill.size > 0 && (this.queued === 0 || spill.peek() < this.blocks[this.first][this.readAt])) return spill.pop();
    const block = this.blocks[this.first];
    const position = block[this.readAt++];
    if (--this.queued === 0) {
      this.blocks.length = 0;
      this.first = this.readAt = this.writeAt = 0;
    } else if (this.readAt === block.length) {
      this.blocks[this.first++] = NO_BLOCK; // let the drained block be collected
      this.readAt = 0;
    }
    return position;
  }
}

/** Binary min-heap of non-negative int32 values in a growable typed array. */
class IntHeap {
  // Most buckets never spill, so the array is only allocated on first use.
  private items = NO_BLOCK;
  size = 0;

  peek(): number {
    return this.items[0];
  }

  push(value: number): void {
    if (this.size === this.items.length) {
      const grown = new Int32Array(Math.max(16, 2 * this.size));
      grown.set(this.items);
      this.items = grown;
    }
    const items = this.items;
    let k = this.size++;
    while (k > 0) {
      const parent = (k - 1) >> 1;
      if (items[parent] <= value) break;
      items[k] = items[parent];
      k = parent;
    }
    items[k] = value;
  }

  pop(): number {
    const items = this.items;
    const top = items[0];
    const size = --this.size;
    if (size === 0) return top;
    const last = items[size];
    let k = 0;
    for (;;) {
      let child = 2 * k + 1;
      if (child >= size) break;
      if (child + 1 < size && items[child + 1] < items[child]) child++;
      if (items[child] >= last) break;
      items[k] = items[child];
      k = child;
    }
    items[k] = last;
    return top;
  }
}

// ---------------------------------------------------------------------------------------------
// Loading

interface Encoder {
  ranks: RankTable;
  splitter: PreTokenizer;
}

const encoders = new Map<EncodingName, Promise<Encoder>>();

function loadEncoder(name: EncodingName): Promise<Encoder> {
  let loading = encoders.get(name);
  if (loading === undefined) {
    loading = (async () => {
      const file = (await RANK_LOADERS[name]()).default;
      return { ranks: await RankTable.build(file.bpe_ranks), splitter: new PreTokenizer(file.pat_str) };
    })();
    encoders.set(name, loading);
    // A failed load is not cached: the next count tries again (callers still see this failure).
    loading.catch(() => encoders.delete(name));
  }
  return loading;
}

// Direct-mapped cache of merged-pair ranks. Long degenerate pieces reuse a handful of pairs
// millions of times; 256 Ki slots (3 MB) also hold most of a long piece of varied text.
const PAIR_CACHE_BITS = 18;

/** The encoding's ranks, keyed by each token's bytes as a string of chars 0-255. */
class RankTable {
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

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer
//
// js-tiktoken splits with `text.matchAll(new RegExp(pat_str, "ug"))`. We interpret the same
// pattern instead, because V8's engine needs backtracking stack per character of a run and
// cannot be paused. The interpreter covers the subset tiktoken patterns use — alternation,
// groups, greedy ? * + {m,n}, character classes, \p{..}, \s, literals, (?!...) — and throws on
// anything else, so a changed pattern fails loudly instead of splitting differently.
//
// Semantics follow ECMAScript: alternatives left to right, quantifiers greedy and giving back
// one code point at a time, a lone surrogate is a code point of its own. Every single-character
// atom (class or literal) gets a bit, and each code point is reduced to the mask of atoms it
// matches.
//
// To keep every step short on multi-megabyte pieces, a first pass over the text (which yields
// as it goes) indexes long stretches where an unbounded loop's atom matches, and long stretches
// where what may follow the loop cannot start. The loop then crosses a stretch in one move, and
// backtracking skips one in one move, so no single match attempt walks more than about
// 2 × LONG_STRETCH_UNITS code units one at a time.

/** One element of a sequence: an atom repeated greedily between min and max times. */
interface Term {
  readonly atom: Atom;
  readonly min: number;
  readonly max: number;
}

type Atom =
  | { readonly kind: "char"; readonly bit: number } // one code point matching atom `bit`
  | { readonly kind: "group"; readonly alts: Seq[] }
  | { readonly kind: "notAhead"; readonly alts: Seq[] };

interface Seq {
  readonly terms: Term[];
  // first: atom bits of which the first code point must match at least one for the sequence to
  // match (0: nothing known). follow[i]: the same for terms i+1.. Lets hopeless attempts stop
  // after one mask test.
  readonly first: number;
  readonly follow: number[];
}

/** Sorted, disjoint [start, end) stretches of at least LONG_STRETCH_UNITS code units. */
interface Stretches {
  readonly starts: number[];
  readonly ends: number[];
}

/** For each tracked atom set: long stretches where code points match it / cannot match it. */
interface TextIndex {
  readonly matching: Map<number, Stretches>;
  readonly missing: Map<number, Stretches>;
}

// Stretches shorter than this are walked one code point at a time (a few microseconds); only
// longer ones are indexed.
const LONG_STRETCH_UNITS = 512;

const NO_STRETCHES: Stretches = { starts: [], ends: [] };
const EMPTY_INDEX: TextIndex = { matching: new Map(), missing: new Map() };

type Cont = (pos: number) => number;
const done: Cont = (pos) => pos;

class PreTokenizer {
  private readonly top: Seq[];
  private readonly atomTests: ((s: string) => boolean)[] = [];
  private readonly atomSources: string[] = [];
  // Atom sets worth indexing: the atom of each unbounded loop, and what may follow one.
  private readonly loopAtoms = new Set<number>();
  private readonly followAtoms = new Set<number>();
  // Atom-match bitmask per BMP code point (lone surrogates included); -1 = not computed yet.
  private readonly bmpMask = new Int32Array(0x10000).fill(-1);
  private readonly astralMask = new Map<number, number>();
  // State of the current synchronous matchAt/indexText stretch.
  private text = "";
  private end = 0;
  private index: TextIndex = EMPTY_INDEX;
  private width = 1; // code units of the code point last read by maskAt

  constructor(private readonly pattern: string) {
    const parser = { i: 0 };
    this.top = this.parseAlternatives(parser);
    if (parser.i !== pattern.length) this.unsupported(parser.i);
  }

  /** One pass over `text` that finds its long stretches (see above), yielding between chunks. */
  async indexText(text: string, slicer: Slicer): Promise<TextIndex> {
    if (text.length < LONG_STRETCH_UNITS) return EMPTY_INDEX;
    const index: TextIndex = { matching: new Map(), missing: new Map() };
    // Tracked stretch kinds, as bit t of `holds`: code points match loop atoms (first), or
    // cannot match follow atoms (after).
    const tracked: Stretches[] = [];
    const kinds: { atoms: number; matching: boolean }[] = [];
    for (const atoms of this.loopAtoms) {
      kinds.push({ atoms, matching: true });
      tracked.push({ starts: [], ends: [] });
      index.matching.set(atoms, tracked[tracked.length - 1]);
    }
    for (const atoms of this.followAtoms) {
      kinds.push({ atoms, matching: false });
      tracked.push({ starts: [], ends: [] });
      index.missing.set(atoms, tracked[tracked.length - 1]);
    }
    if (kinds.length > 31) throw new Error(`token pattern has too many loops to index: ${this.pattern}`);
    const holdsByMask = new Map<number, number>();
    const holdsOf = (mask: number): number => {
      let holds = holdsByMask.get(mask);
      if (holds === undefined) {
        holds = 0;
        kinds.forEach((kind, t) => {
          if (((mask & kind.atoms) !== 0) === kind.matching) holds! |= 1 << t;
        });
        holdsByMask.set(mask, holds);
      }
      return holds;
    };
    // The last few masks seen, so that text alternating between a handful of masks (say,
    // contraction letters and other letters) rarely reaches the Map.
    const recentMasks = new Int32Array(4).fill(-1);
    const recentHolds = new Int32Array(4);
    const starts = new Array<number>(kinds.length).fill(0);
    const closeAt = (t: number, end: number): void => {
      if (end - starts[t] >= LONG_STRETCH_UNITS) {
        tracked[t].starts.push(starts[t]);
        tracked[t].ends.push(end);
      }
    };
    let previousMask = -1;
    let previousHolds = 0;
    let p = 0;
    while (p < text.length) {
      // Set again after every yield: another count may have used this splitter meanwhile.
      this.text = text;
      this.end = text.length;
      const stop = Math.min(text.length, p + 65536);
      while (p < stop) {
        const mask = this.maskAt(p);
        if (mask !== previousMask) {
          previousMask = mask;
          const slot = Math.imul(mask, 0x9e3779b1) >>> 30;
          if (recentMasks[slot] !== mask) {
            recentMasks[slot] = mask;
            recentHolds[slot] = holdsOf(mask);
          }
          const holds = recentHolds[slot];
          for (let changed = holds ^ previousHolds; changed !== 0; changed &= changed - 1) {
            const t = 31 - Math.clz32(changed & -changed);
            if ((holds & (1 << t)) !== 0) starts[t] = p;
            else closeAt(t, p);
          }
          previousHolds = holds;
        }
        p += this.width;
      }
      if (slicer.due()) await slicer.yield();
    }
    for (let t = 0; t < kinds.length; t++) if ((previousHolds & (1 << t)) !== 0) closeAt(t, p);
    return index;
  }

  /** End of the piece the pattern matches at `pos` (what RegExp with flags "uy" would give), or -1. */
  matchAt(text: string, pos: number, index: TextIndex): number {
    this.text = text;
    this.end = text.length;
    this.index = index;
    for (const alt of this.top) {
      if (!this.canStart(alt.first, pos)) continue;
      const end = this.matchSeq(alt, 0, pos, done);
      if (end >= 0) return end;
    }
    return -1;
  }

  private matchSeq(seq: Seq, index: number, pos: number, k: Cont): number {
    if (index === seq.terms.length) return k(pos);
    const term = seq.terms[index];
    const atom = term.atom;
    if (atom.kind === "char") {
      return term.max === Infinity ? this.matchLoop(seq, index, pos, k) : this.matchBounded(seq, index, pos, k);
    }
    if (atom.kind === "notAhead") {
      for (const alt of atom.alts) {
        if (this.canStart(alt.first, pos) && this.matchSeq(alt, 0, pos, done) >= 0) return -1;
      }
      return this.matchSeq(seq, index + 1, pos, k);
    }
    // A group, repeated at most once: try one pass (each alternative in turn, backtracking into
    // it), then — if optional — none.
    const rest: Cont = (p) => this.matchSeq(seq, index + 1, p, k);
    for (const alt of atom.alts) {
      if (!this.canStart(alt.first, pos)) continue;
      const end = this.matchSeq(alt, 0, pos, rest);
      if (end >= 0) return end;
    }
    return term.min === 0 ? this.matchSeq(seq, index + 1, pos, k) : -1;
  }

  /** A single-code-point atom repeated greedily at most `max` (finite) times, then the rest. */
  private matchBounded(seq: Seq, index: number, pos: number, k: Cont): number {
    const term = seq.terms[index];
    const atoms = 1 << (term.atom as { bit: number }).bit;
    const follow = seq.follow[index];
    let p = pos;
    let count = 0;
    while (count < term.max && p < this.end && (this.maskAt(p) & atoms) !== 0) {
      p += this.width;
      count++;
    }
    if (count < term.min) return -1;
    // Greedy: the longest repetition first, then one code point fewer at a time.
    for (;;) {
      if (this.canStart(follow, p)) {
        const end = this.matchSeq(seq, index + 1, p, k);
        if (end >= 0) return end;
      }
      if (count === term.min) return -1;
      p = this.stepBack(p, pos);
      count--;
    }
  }

  /** A single-code-point atom repeated greedily without upper bound, then the rest. */
  private matchLoop(seq: Seq, index: number, pos: number, k: Cont): number {
    const term = seq.terms[index];
    const atoms = 1 << (term.atom as { bit: number }).bit;
    const follow = seq.follow[index];
    let p = pos;
    for (let i = 0; i < term.min; i++) {
      if (p >= this.end || (this.maskAt(p) & atoms) === 0) return -1;
      p += this.width;
    }
    const minEnd = p;
    // As far as the atom matches, crossing indexed stretches in one move.
    const { starts, ends } = this.index.matching.get(atoms) ?? NO_STRETCHES;
    let s = firstEndingAfter(ends, p);
    while (p < this.end) {
      if (s < starts.length && p >= starts[s]) {
        p = ends[s++];
        continue;
      }
      if ((this.maskAt(p) & atoms) === 0) break;
      p += this.width;
    }
    // Greedy: the longest repetition first.
    if (this.canStart(follow, p)) {
      const end = this.matchSeq(seq, index + 1, p, k);
      if (end >= 0) return end;
    }
    if (follow === 0) {
      // Nothing known about what follows: give back one code point at a time.
      while (p > minEnd) {
        p = this.stepBack(p, minEnd);
        const end = this.matchSeq(seq, index + 1, p, k);
        if (end >= 0) return end;
      }
      return -1;
    }
    // Then, right to left, only the positions where what follows can start.
    for (p = this.lastStartBefore(follow, p, minEnd); p >= 0; p = this.lastStartBefore(follow, p, minEnd)) {
      const end = this.matchSeq(seq, index + 1, p, k);
      if (end >= 0) return end;
    }
    return -1;
  }

  /** The last code point start in [floor, pos) whose mask meets `atoms`, or -1. */
  private lastStartBefore(atoms: number, pos: number, floor: number): number {
    const { starts, ends } = this.index.missing.get(atoms) ?? NO_STRETCHES;
    let s = lastStartingBefore(starts, pos);
    while (pos > floor) {
      if (s >= 0 && ends[s] >= pos) {
        // The code point before pos lies in a stretch where `atoms` cannot start: skip it.
        pos = Math.max(starts[s--], floor);
        continue;
      }
      pos = this.stepBack(pos, floor);
      if ((this.maskAt(pos) & atoms) !== 0) return pos;
      if (s >= 0 && starts[s] >= pos) s--;
    }
    return -1;
  }

  private canStart(firstAtoms: number, pos: number): boolean {
    return firstAtoms === 0 || (pos < this.end && (this.maskAt(pos) & firstAtoms) !== 0);
  }

  /** Start of the code point before `pos` (never before `floor`). */
  private stepBack(pos: number, floor: number): number {
    const text = this.text;
    if (pos - 2 >= floor) {
      const lo = text.charCodeAt(pos - 1);
      const hi = text.charCodeAt(pos - 2);
      if (lo >= 0xdc00 && lo < 0xe000 && hi >= 0xd800 && hi < 0xdc00) return pos - 2;
    }
    return pos - 1;
  }

  /** Atom-match bitmask of the code point at `pos`; sets this.width. */
  private maskAt(pos: number): number {
    const text = this.text;
    const cu = text.charCodeAt(pos);
    this.width = 1;
    if (cu >= 0xd800 && cu < 0xdc00 && pos + 1 < this.end) {
      const lo = text.charCodeAt(pos + 1);
      if (lo >= 0xdc00 && lo < 0xe000) {
        this.width = 2;
        const cp = (cu - 0xd800) * 0x400 + (lo - 0xdc00) + 0x10000;
        return this.astralMask.get(cp) ?? this.computeMask(cp);
      }
    }
    const mask = this.bmpMask[cu];
    return mask >= 0 ? mask : this.computeMask(cu);
  }

  private computeMask(cp: number): number {
    const s = String.fromCodePoint(cp);
    let mask = 0;
    for (let bit = 0; bit < this.atomTests.length; bit++) {
      if (this.atomTests[bit](s)) mask |= 1 << bit;
    }
    if (cp < 0x10000) this.bmpMask[cp] = mask;
    else this.astralMask.set(cp, mask);
    return mask;
  }

  // --- parsing -------------------------------------------------------------------------------

  private parseAlternatives(parser: { i: number }): Seq[] {
    const alts = [this.parseSeq(parser)];
    while (this.pattern[parser.i] === "|") {
      parser.i++;
      alts.push(this.parseSeq(parser));
    }
    return alts;
  }

  private parseSeq(parser: { i: number }): Seq {
    const terms: Term[] = [];
    const pat = this.pattern;
    while (parser.i < pat.length && pat[parser.i] !== "|" && pat[parser.i] !== ")") {
      const atom = this.parseAtom(parser);
      let min = 1;
      let max = 1;
      const q = pat[parser.i];
      if (q === "?" || q === "*" || q === "+") {
        parser.i++;
        min = q === "+" ? 1 : 0;
        max = q === "?" ? 1 : Infinity;
      } else if (q === "{") {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(pat.slice(parser.i));
        if (m === null) this.unsupported(parser.i);
        parser.i += m[0].length;
        min = Number(m[1]);
        max = m[2] === undefined ? min : m[3] === "" ? Infinity : Number(m[3]);
      }
      if (q !== undefined && "?*+{".includes(q) && pat[parser.i] === "?") this.unsupported(parser.i); // lazy
      if (atom.kind === "notAhead" && (min !== 1 || max !== 1)) this.unsupported(parser.i);
      // A group repeated more than once, or an optional one that can match empty text, would
      // need ECMAScript's empty-iteration rules; tiktoken patterns have neither.
      if (atom.kind === "group" && (max > 1 || (min === 0 && atom.alts.some(canBeEmpty)))) this.unsupported(parser.i);
      terms.push({ atom, min, max });
    }
    const follow = terms.map((_, i) => firstAtoms(terms, i + 1));
    terms.forEach((term, i) => {
      if (term.atom.kind !== "char" || term.max !== Infinity) return;
      this.loopAtoms.add(1 << term.atom.bit);
      if (follow[i] !== 0) this.followAtoms.add(follow[i]);
    });
    return { terms, first: firstAtoms(terms, 0), follow };
  }

  private parseAtom(parser: { i: number }): Atom {
    const pat = this.pattern;
    const c = pat[parser.i];
    if (c === "(") {
      let kind: "group" | "notAhead" = "group";
      if (pat.startsWith("(?:", parser.i)) parser.i += 3;
      else if (pat.startsWith("(?!", parser.i)) {
        kind = "notAhead";
        parser.i += 3;
      } else if (pat[parser.i + 1] === "?") this.unsupported(parser.i);
      else parser.i++;
      const alts = this.parseAlternatives(parser);
      if (pat[parser.i] !== ")") this.unsupported(parser.i);
      parser.i++;
      return { kind, alts };
    }
    if (c === "[") {
      const start = parser.i;
      let i = start + 1;
      while (i < pat.length && pat[i] !== "]") i += pat[i] === "\\" ? 2 : 1;
      if (i >= pat.length || pat.slice(start + 1, i).includes("[")) this.unsupported(start);
      parser.i = i + 1;
      return this.regexAtom(pat.slice(start, i + 1));
    }
    if (c === "\\") {
      const e = pat[parser.i + 1];
      if (e === "p" || e === "P") {
        const close = pat.indexOf("}", parser.i);
        if (pat[parser.i + 2] !== "{" || close < 0) this.unsupported(parser.i);
        const source = pat.slice(parser.i, close + 1);
        parser.i = close + 1;
        return this.regexAtom(source);
      }
      if (e === undefined || !"sSdDwWrntfv^$\\.*+?()[]{}|/".includes(e)) this.unsupported(parser.i);
      parser.i += 2;
      return this.regexAtom("\\" + e);
    }
    if (c === undefined || ".^$*+?{}]".includes(c)) this.unsupported(parser.i);
    const cp = pat.codePointAt(parser.i)!;
    parser.i += cp > 0xffff ? 2 : 1;
    const literal = String.fromCodePoint(cp);
    return this.atom(`lit:${literal}`, (s) => s === literal);
  }

  /** A single-character atom written in regex syntax (class, escape), tested by V8 itself. */
  private regexAtom(source: string): Atom {
    const re = new RegExp(`^${source}$`, "u");
    return this.atom(`re:${source}`, (s) => re.test(s));
  }

  private atom(key: string, test: (s: string) => boolean): Atom {
    let bit = this.atomSources.indexOf(key);
    if (bit < 0) {
      bit = this.atomSources.length;
      if (bit >= 31) throw new Error(`token pattern has more than 31 distinct character atoms: ${this.pattern}`);
      this.atomSources.push(key);
      this.atomTests.push(test);
    }
    return { kind: "char", bit };
  }

  private unsupported(at: number): never {
    throw new Error(`unsupported token pattern syntax at offset ${at}: ${this.pattern}`);
  }
}

/**
 * Atom bits of which the first code point of any match of terms[from..] matches at least one, or
 * 0 when unknown (the terms can match empty text, or start with a lookahead).
 */
function firstAtoms(terms: Term[], from: number): number {
  let atoms = 0;
  for (let i = from; i < terms.length; i++) {
    const { atom, min } = terms[i];
    if (atom.kind === "char") atoms |= 1 << atom.bit;
    else if (atom.kind === "group" && atom.alts.every((alt) => alt.first !== 0)) {
      for (const alt of atom.alts) atoms |= alt.first;
    } else return 0;
    if (min > 0) return atoms;
  }
  return 0;
}

function canBeEmpty(seq: Seq): boolean {
  return seq.terms.every((t) => t.min === 0 || t.atom.kind === "notAhead" || (t.atom.kind === "group" && t.atom.alts.some(canBeEmpty)));
}

/** Index of `search` in text[from, limit), or limit when absent. */
function indexOrLimit(text: string, search: string, from: number, limit: number): number {
  const i = text.indexOf(search, from);
  return i < 0 || i > limit ? limit : i;
}

/** Index of the first stretch ending after `pos` (binary search over sorted ends). */
function firstEndingAfter(ends: number[], pos: number): number {
  let lo = 0;
  let hi = ends.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ends[mid] <= pos) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the last stretch starting before `pos`, or -1 (binary search over sorted starts). */
function lastStartingBefore(starts: number[], pos: number): number {
  let lo = 0;
  let hi = starts.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (starts[mid] < pos) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}
