/** UTF-8 encoding of pieces, in the forms the rank table and the merge code read. */
import type { Slicer } from "./slicer";

/** The piece's UTF-8 bytes as a string of chars 0-255, the form the rank table is keyed by. */
export function latin1Bytes(text: string, start: number, end: number): string {
  for (let i = start; i < end; i++) {
    // Lone surrogates become EF BF BD here, exactly as in js-tiktoken's TextEncoder.
    if (text.charCodeAt(i) >= 0x80) return Buffer.from(text.slice(start, end), "utf8").toString("latin1");
  }
  return text.slice(start, end);
}

// Long pieces are UTF-8 encoded this many code units at a time (~1-3 ms each).
const ENCODE_CHUNK_UNITS = 1 << 20;

/** UTF-8 bytes of text[start, end), encoded in chunks with yields in between. */
export async function utf8Bytes(text: string, start: number, end: number, slicer: Slicer): Promise<Uint8Array> {
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

/** Code units of the code point at `pos`: 2 for a surrogate pair, else 1 (a lone surrogate too). */
export function codePointWidth(text: string, pos: number): number {
  const cu = text.charCodeAt(pos);
  if (cu >= 0xd800 && cu < 0xdc00 && pos + 1 < text.length) {
    const lo = text.charCodeAt(pos + 1);
    if (lo >= 0xdc00 && lo < 0xe000) return 2;
  }
  return 1;
}
