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
export class MergeQueue {
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
