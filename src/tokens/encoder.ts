/** Loads an encoding once per process: its rank table and its pre-tokenizer. */
import { type EncodingName, RANK_LOADERS } from "./encodings";
import { PreTokenizer } from "./pretokenizer";
import { RankTable } from "./rank_table";

interface Encoder {
  ranks: RankTable;
  splitter: PreTokenizer;
}

const encoders = new Map<EncodingName, Promise<Encoder>>();

/** The encoding's rank table and pre-tokenizer, built on first use and shared after that. */
export function loadEncoder(name: EncodingName): Promise<Encoder> {
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
