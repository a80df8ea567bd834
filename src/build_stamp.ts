/**
 * The build's stamp. `npm run build` (and so `npm ci`, through `prepare`)
 * ends by writing a hash of the sources it compiled into dist/; the CLI
 * compares it with the sources present when it starts, so that code built
 * from older sources (after a `git pull`, say) is refused rather than run.
 * A folder without sources (only dist/ deployed) is not checked.
 *
 * Run as a script, `node dist/src/build_stamp.js` writes the stamp (the end
 * of `npm run build`), and with `--check` exits 0 if dist/ is fresh, 1 if not
 * (npm's `prepare`, which builds only then: npx runs `prepare` too, the first
 * time it runs `npx fila-llm` of a folder, and must not rebuild a fresh build).
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { projectRoot } from "./paths";

// What dist/src and dist/tasks, the code the CLI runs, are compiled from.
const SOURCES = ["src", "tasks", "tsconfig.json"];
const STAMP_FILE = path.join("dist", "sources.sha256");

/** Files under `relative` (a file or a folder of `root`), as paths relative to `root`. */
function filesUnder(root: string, relative: string): string[] {
  const full = path.join(root, relative);
  if (!existsSync(full)) return [];
  if (!statSync(full).isDirectory()) return [relative];
  return readdirSync(full, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesUnder(root, path.join(relative, entry.name)) : entry.name.endsWith(".ts") ? [path.join(relative, entry.name)] : [],
  );
}

/** A hash of the sources under `root` (names and contents), or null if there are none. */
export function sourcesHash(root: string): string | null {
  if (!existsSync(path.join(root, "src"))) return null;
  const hash = createHash("sha256");
  for (const file of SOURCES.flatMap((s) => filesUnder(root, s)).sort()) {
    hash.update(file).update("\0").update(readFileSync(path.join(root, file))).update("\0");
  }
  return hash.digest("hex");
}

/** Records that dist/ under `root` was built from the sources there now. */
export function writeBuildStamp(root: string): void {
  writeFileSync(path.join(root, STAMP_FILE), (sourcesHash(root) ?? "") + "\n");
}

/**
 * Null if dist/ under `root` was built from the sources there (or there are
 * no sources to compare); otherwise what is wrong and what to do, in one line.
 */
export function staleBuild(root: string): string | null {
  const sources = sourcesHash(root);
  if (sources === null) return null;
  let built: string | null = null;
  try {
    built = readFileSync(path.join(root, STAMP_FILE), "utf8").trim();
  } catch {
    // No stamp: built by a plain `tsc`, or cut short; as stale as an old one.
  }
  if (built === sources) return null;
  return "the compiled code in dist/ was not built from the sources in src/ and tasks/ (they changed since, e.g. with a git pull): run `npm run build`";
}

if (require.main === module) {
  if (process.argv.includes("--check")) process.exit(staleBuild(projectRoot) === null ? 0 : 1);
  writeBuildStamp(projectRoot);
}
