/**
 * Tells, while an answer streams in, that its tail has become a loop: one
 * block of text, from a single character to a paragraph of MAX_BLOCK_CHARS,
 * repeated verbatim back to back. Small models fall into such loops
 * ("= = = …", one paragraph again and again) and nothing on the server side
 * stops them by default, so without this a looping prompt holds the GPU until
 * LLM_TIMEOUT_SECONDS, every night.
 *
 * A loop is certain when the answer's last `loopSpanChars(p)` characters have
 * period p (each character equals the one p before it). The span is long
 * enough that real text never reaches it (test/repetition_guard.test.ts
 * streams every README and CHANGELOG under node_modules/ through it), and
 * short enough to cut a loop within seconds:
 *
 * - at least MIN_LOOP_CHARS, so that a line of 120 dashes, "ja" 20 times or
 *   a padded table cell is not a loop;
 * - and at least SHORT_BLOCK_COPIES copies of a block under PARAGRAPH_CHARS
 *   (the same short line 3 times is not a loop), or PARAGRAPH_COPIES copies
 *   of a longer one, so that a paragraph repeated for ever is cut before the
 *   end of its fourth copy.
 *
 * Checked at most once per `push` (one network read), from the smallest
 * period up; each period costs one character comparison unless the last
 * characters really repeat, so a check is a few microseconds.
 */

/** The longest block that counts as a loop's unit: a paragraph. */
export const MAX_BLOCK_CHARS = 2_000;
// Above the longest run of one or two characters in real text (a line of
// dashes, a run of spaces in a padded table), below what a loop of "= "
// produces in 10 s at 20 tokens/s (about 400 characters).
const MIN_LOOP_CHARS = 200;
const PARAGRAPH_CHARS = 100;
const SHORT_BLOCK_COPIES = 4;
// A paragraph must be cut before the end of its fourth copy.
const PARAGRAPH_COPIES = 3.5;
// The characters compared before a whole span is: real text almost never
// repeats this many characters at a distance p, so the full comparison is rare.
const QUICK_CHECK_CHARS = 16;

/** How many of the last characters must have period p for a loop of block length p. */
export function loopSpanChars(p: number): number {
  const copies = p < PARAGRAPH_CHARS ? SHORT_BLOCK_COPIES : PARAGRAPH_COPIES;
  return Math.max(MIN_LOOP_CHARS, Math.ceil(copies * p));
}

// loopSpanChars(p) for every period, computed once: a check reads it 2,000 times.
const SPANS = Int32Array.from({ length: MAX_BLOCK_CHARS + 1 }, (_, p) => (p === 0 ? 0 : loopSpanChars(p)));
// The whole window the guard needs to see: the longest span of any period.
const WINDOW_CHARS = SPANS.reduce((a, b) => Math.max(a, b), 0);

export interface Loop {
  /** The repeated block, in the order the answer last produced it. */
  block: string;
  /** Whole copies of the block at the end of the answer when it was cut. */
  copies: number;
}

export class RepetitionGuard {
  // The answer's last characters as UTF-16 codes, in a buffer twice the
  // window: appends are cheap, and the window is moved back to the start
  // only when the buffer is full.
  private readonly codes = new Uint16Array(2 * WINDOW_CHARS);
  private length = 0;

  /** Adds streamed text; returns the loop if the answer's tail has become one. */
  push(text: string): Loop | null {
    if (text.length === 0) return null;
    if (text.length >= WINDOW_CHARS) {
      this.length = 0;
      text = text.slice(-WINDOW_CHARS);
    } else if (this.length + text.length > this.codes.length) {
      this.codes.copyWithin(0, this.length - WINDOW_CHARS, this.length);
      this.length = WINDOW_CHARS;
    }
    for (let i = 0; i < text.length; i++) this.codes[this.length + i] = text.charCodeAt(i);
    this.length += text.length;
    return this.findLoop();
  }

  private findLoop(): Loop | null {
    const c = this.codes;
    const end = this.length;
    const n = Math.min(end, WINDOW_CHARS);
    if (n < MIN_LOOP_CHARS) return null;
    const maxPeriod = Math.min(MAX_BLOCK_CHARS, n - 1);
    const last = c[end - 1];
    for (let p = 1; p <= maxPeriod; p++) {
      // Most periods fail here, on one comparison.
      if (c[end - 1 - p] !== last) continue;
      const span = SPANS[p];
      if (span > n) continue;
      // The last QUICK_CHECK_CHARS first, then the whole span.
      if (!periodicOver(c, end, p, Math.min(QUICK_CHECK_CHARS, span - p)) || !periodicOver(c, end, p, span - p)) continue;
      const block = String.fromCharCode(...c.subarray(end - p, end));
      let copies = 0;
      while ((copies + 1) * p <= n && periodicOver(c, end, p, copies * p)) copies++;
      return { block, copies };
    }
    return null;
  }
}

/** True if each of the `count` codes before `end` equals the one p before it. */
function periodicOver(c: Uint16Array, end: number, p: number, count: number): boolean {
  for (let i = end - 1; i >= end - count; i--) if (c[i] !== c[i - p]) return false;
  return true;
}

/** How many whole copies of its last p characters the text ends with. */
export function copiesAtEnd(text: string, p: number): number {
  return Math.floor(periodicSuffix(text, p) / p);
}

/** Length of the longest suffix of t with period p. */
function periodicSuffix(t: string, p: number): number {
  let i = t.length - 1;
  while (i - p >= 0 && t.charCodeAt(i) === t.charCodeAt(i - p)) i--;
  return t.length - 1 - i + p;
}
