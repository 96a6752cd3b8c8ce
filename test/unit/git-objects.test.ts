import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { treeObject } from "../../src/core/git-objects.js";
import { parseBuiltTree, parseTreeObject } from "../../src/git/tree-reader.js";

/** Names that sort differently as UTF-16 and as UTF-8: ASCII, Latin, the private use area (U+E000) after surrogate pairs (an emoji). */
const name = fc
  .array(fc.constantFrom("a", "b", "-", ".", "é", "\uE000", "\uFFFD", "😀", "0"), { minLength: 1, maxLength: 4 })
  .map((chars) => chars.join(""));
const entry = fc.record({ name, dir: fc.boolean(), oid: fc.uint8Array({ minLength: 20, maxLength: 20 }) });

const repo = mkdtempSync(join(tmpdir(), "tidemark-objects-"));
execFileSync("git", ["init", "-q", "--bare", repo]);
afterAll(() => rmSync(repo, { recursive: true, force: true }));

/** The oid `git mktree` gives the entries: git's own order and format. */
function gitTree(entries: ReadonlyArray<{ name: string; mode: string; oid: string; dir: boolean }>): string {
  const input = entries.map((e) => `${e.mode === "40000" ? "040000 tree" : `${e.mode} blob`} ${e.oid}\t${e.name}\n`).join("");
  return execFileSync("git", ["--git-dir", repo, "mktree", "--missing"], { input }).toString().trim();
}

describe("git objects built in memory", () => {
  it("gives a tree the oid git gives it, for names whose byte order is not their string order", () => {
    fc.assert(
      fc.property(fc.uniqueArray(entry, { selector: (e) => e.name, minLength: 1, maxLength: 8 }), (drawn) => {
        const entries = drawn.map((e) => ({
          name: e.name,
          dir: e.dir,
          mode: e.dir ? "40000" : "100644",
          oid: Buffer.from(e.oid).toString("hex"),
        }));
        expect(treeObject(entries).oid).toBe(gitTree(entries));
      }),
      { seed: 20261206, numRuns: 60 },
    );
  });

  it("reads a tree it built as its body reads: a name twice and a mode git does not know are its faults", () => {
    const drawn = fc.record({ name, dir: fc.boolean(), oid: fc.uint8Array({ minLength: 20, maxLength: 20 }), odd: fc.boolean() });
    fc.assert(
      fc.property(fc.array(drawn, { minLength: 0, maxLength: 8 }), (picked) => {
        const built = treeObject(
          picked.map((e) => ({
            name: e.name,
            dir: e.dir,
            mode: e.dir ? "40000" : e.odd ? "100664" : "100755",
            oid: Buffer.from(e.oid).toString("hex"),
          })),
        );
        expect(parseBuiltTree(built)).toEqual(parseTreeObject(built.body));
      }),
      { seed: 20261206, numRuns: 200 },
    );
  });
});
