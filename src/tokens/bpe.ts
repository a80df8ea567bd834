/**
 * Byte-pair merging: counts the tokens of each piece in js-tiktoken's merge order, short pieces
 * by scanning, long ones through MergeQueue.
 */
import type { EncodingName } from "./encodings";
import { loadEncoder } from "./encoder";
import { MergeQueue } from "./merge_queue";
import { RankTable } from "./rank_table";
import { Slicer } from "./slicer";
import { codePointWidth, latin1Bytes, utf8Bytes } from "./utf8";

// Pieces up to this many UTF-8 bytes merge by plain scanning (quadratic but allocation-free);
// longer ones use the priority queue. 128 bytes is the longest token in every shipped encoding.
const SMALL_PIECE_BYTES = 128;

// The clock is read every this many pieces / merge steps (each at most a few microseconds of
// work), so reading it costs little and a slice overruns SLICE_MS by well under a millisecond.
const PIECES_PER_CLOCK_CHECK = 64;
const MERGE_STEPS_PER_CLOCK_CHECK = 1024;

/** Counts one encoding's tokens; `forEachPiece` also serves `preTokenize`. */
export class BpeCounter {
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
