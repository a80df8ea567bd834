/** Real text for the repetition guard to read: every README.md and CHANGELOG.md under node_modules/. */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { projectRoot } from "../../src/paths";

/** The files, whatever their case, in name order, with their text. */
export function readmeCorpus(): { file: string; text: string }[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const full = path.join(dir, name);
      const stat = statSync(full, { throwIfNoEntry: false });
      if (stat?.isDirectory()) walk(full);
      else if (stat?.isFile() && /^(readme|changelog)\.md$/i.test(name)) found.push(full);
    }
  };
  walk(path.join(projectRoot, "node_modules"));
  return found.sort().map((file) => ({ file: path.relative(projectRoot, file), text: readFileSync(file, "utf8") }));
}
