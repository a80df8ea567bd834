// The pre-tokenizer: splits text into the pieces that are merged, as the encoding's pattern does.
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
import type { Slicer } from "./slicer";

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
export interface TextIndex {
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

export class PreTokenizer {
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
