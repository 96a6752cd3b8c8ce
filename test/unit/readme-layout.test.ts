import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The README and docs/ say where things are; these checks keep them true:
 * the README's layout names only paths that exist, the README stays a README
 * (under 20 KB), and no link leaves the repository or points at nothing.
 */
const ROOT = resolve(new URL("../..", import.meta.url).pathname);
const README = join(ROOT, "README.md");
const DOCS = join(ROOT, "docs");

const read = (file: string) => readFileSync(file, "utf8");
const docsFiles = () =>
  readdirSync(DOCS)
    .filter((name) => name.endsWith(".md"))
    .map((name) => join(DOCS, name));

/** The lines of a Markdown text outside fenced code blocks. */
function proseLines(text: string): string[] {
  let fenced = false;
  return text.split("\n").filter((line) => {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      return false;
    }
    return !fenced;
  });
}

/** The body of the first fenced block under the `## <title>` heading. */
function fencedBlockUnder(text: string, title: string): string[] {
  const lines = text.split("\n");
  const heading = lines.findIndex((line) => line.trim() === `## ${title}`);
  if (heading < 0) return [];
  const section = lines.slice(heading + 1);
  const end = section.findIndex((line) => /^## /.test(line));
  const body = end < 0 ? section : section.slice(0, end);
  const open = body.findIndex((line) => line.startsWith("```"));
  if (open < 0) return [];
  const close = body.findIndex((line, i) => i > open && line.startsWith("```"));
  return body.slice(open + 1, close < 0 ? undefined : close);
}

/**
 * The paths a layout block names: a line whose first word is a folder (`src/`)
 * or a file (`vitest.config.ts`), nested under the folder above it by
 * indentation (`  cli/` under `src/` is `src/cli/`). Other lines (a wrapped
 * description, a note) name nothing.
 */
function layoutPaths(block: readonly string[]): string[] {
  const paths: string[] = [];
  const folders: Array<{ indent: number; path: string }> = [];
  for (const line of block) {
    const match = /^( *)(\S+)/.exec(line);
    if (!match) continue;
    const indent = match[1]!.length;
    const word = match[2]!;
    if (!/^[\w.@-]+(\/[\w.@-]+)*\/?$/.test(word) || !(word.endsWith("/") || word.includes("."))) continue;
    while (folders.length > 0 && folders[folders.length - 1]!.indent >= indent) folders.pop();
    const path = `${folders[folders.length - 1]?.path ?? ""}${word}`;
    paths.push(path);
    if (word.endsWith("/")) folders.push({ indent, path });
  }
  return paths;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/ /g, "-");
}

function anchors(file: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const line of proseLines(read(file))) {
    const match = /^#{1,6}\s+(.*)$/.exec(line);
    if (!match) continue;
    const base = slug(match[1]!);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    result.add(count === 0 ? base : `${base}-${count}`);
  }
  return result;
}

/** Every inline link target of a Markdown text, outside code blocks. */
function links(text: string): string[] {
  return proseLines(text).flatMap((line) => [...line.matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1]!));
}

describe("the README's layout", () => {
  const block = fencedBlockUnder(read(README), "Layout");

  it("is a fenced block under ## Layout that names the source folders", () => {
    const paths = layoutPaths(block);
    expect(paths).toEqual(expect.arrayContaining(["src/", "src/core/", "test/", "test/unit/", "docs/", "deploy/"]));
  });

  it("names only paths that exist", () => {
    const missing = layoutPaths(block).filter(
      (path) => !existsSync(join(ROOT, path)) || path.endsWith("/") !== statSync(join(ROOT, path)).isDirectory(),
    );
    expect(missing).toEqual([]);
  });

  it("names every folder of src/", () => {
    const folders = readdirSync(join(ROOT, "src"), { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => `src/${entry.name}/`);
    expect(folders.filter((folder) => !layoutPaths(block).includes(folder))).toEqual([]);
  });

  it("reads nesting by indentation and skips lines that are not paths", () => {
    expect(
      layoutPaths([
        "src/           the product",
        "  cli/         one file per command",
        "               wrapped: core/, config/",
        "test/",
        "  unit/",
        "vitest.config.ts  the projects",
      ]),
    ).toEqual(["src/", "src/cli/", "test/", "test/unit/", "vitest.config.ts"]);
  });
});

describe("the README", () => {
  const text = read(README);

  it("is under 20 KB", () => {
    expect(Buffer.byteLength(text)).toBeLessThan(20_000);
  });

  it("names the commands CI and people run", () => {
    expect(text).toContain("npm test");
    expect(text).toContain("npm run demo");
  });

  it("names no path outside the repository", () => {
    expect(text.split("\n").filter((line) => line.includes("../"))).toEqual([]);
  });

  it("carries no status notes about issues", () => {
    expect(text.split("\n").filter((line) => /\bissues? \d+/i.test(line))).toEqual([]);
  });
});

describe("links in the README and docs/", () => {
  for (const file of [README, ...docsFiles()]) {
    it(`${relative(ROOT, file)}: every relative link stays in the repository and reaches a file and heading that exist`, () => {
      const broken: string[] = [];
      for (const target of links(read(file))) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto: — not a file
        const [path = "", anchor] = target.split("#");
        const resolved = path === "" ? file : resolve(dirname(file), path);
        if (relative(ROOT, resolved).startsWith("..")) broken.push(`${target}: outside the repository`);
        else if (!existsSync(resolved)) broken.push(`${target}: no such file`);
        else if (anchor && resolved.endsWith(".md") && !anchors(resolved).has(anchor)) broken.push(`${target}: no such heading`);
      }
      expect(broken).toEqual([]);
    });
  }
});

describe("docs/architecture.md", () => {
  it("names only files and folders that exist", () => {
    const text = read(join(DOCS, "architecture.md"));
    const named = [...text.matchAll(/`((?:src|test|bench|scripts|deploy|docs)\/[\w./-]*)`/g)].map((match) => match[1]!);
    expect(named.length).toBeGreaterThan(10);
    expect(named.filter((path) => !existsSync(join(ROOT, path)))).toEqual([]);
  });
});
