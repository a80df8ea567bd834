/**
 * The encodings js-tiktoken ships and where their ranks are loaded from. Kept apart from the
 * counter so that config validation can check a name without loading the BPE code.
 */

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
export const RANK_LOADERS: Record<EncodingName, () => Promise<{ default: RanksFile }>> = {
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
