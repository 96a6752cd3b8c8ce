import { mkdtempSync, rmSync } from "node:fs";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import git from "isomorphic-git";
import { afterAll, describe, expect, it } from "vitest";
import { parseTreeObject, TreeReader } from "../../src/git/tree-reader.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

describe("TreeReader's caches", () => {
  const dir = mkdtempSync(join(tmpdir(), "tidemark-reader-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("keep the tree oid of a commit, not the commit's whole text", async () => {
    await git.init({ fs, dir });
    await fs.promises.writeFile(join(dir, "a"), "a\n");
    await git.add({ fs, dir, filepath: "a" });
    const author = { name: "t", email: "t@example.test", timestamp: 0, timezoneOffset: 0 };
    const messageBytes = 4 * 2 ** 20;
    const commits: string[] = [];
    for (let n = 0; n < 8; n++) commits.push(await git.commit({ fs, dir, author, message: `${n}`.padEnd(messageBytes, "x") }));

    const reader = new TreeReader(join(dir, ".git"));
    gc();
    const before = process.memoryUsage().heapUsed;
    const trees = await Promise.all(commits.map((commit) => reader.commitTree(commit)));
    gc();
    const held = process.memoryUsage().heapUsed - before;

    expect(new Set(trees).size).toBe(1);
    // Each tree oid cut from its 4 MiB commit text would keep that text alive: 32 MiB.
    // (The last one read may stay a while in isomorphic-git's or V8's hands.)
    expect(held).toBeLessThan(2 * messageBytes);
  });
});

/** A raw tree object, entries written exactly as given: `[mode, name]`, the name as text or as raw bytes. */
function treeObject(entries: Array<[string, string | Buffer]>): Buffer {
  const oid = Buffer.alloc(20, 0xab);
  return Buffer.concat(entries.map(([mode, name]) => Buffer.concat([Buffer.from(`${mode} `), Buffer.from(name), Buffer.from([0]), oid])));
}

describe("parseTreeObject", () => {
  it("finds no fault in a tree as git writes it, where a directory sorts as if it ended in '/'", () => {
    // The order `git mktree` gives these entries: the directory b after b-run and b.link, before b0.
    const parsed = parseTreeObject(
      treeObject([
        ["100644", "a"],
        ["100644", "a.b"],
        ["100644", "a.conf"],
        ["100755", "b-run"],
        ["120000", "b.link"],
        ["40000", "b"],
        ["160000", "b0"],
        ["40000", "conf.d"],
      ]),
    );
    expect(parsed.entries.map((entry) => entry.name)).toEqual(["a", "a.b", "a.conf", "b-run", "b.link", "b", "b0", "conf.d"]);
    expect(parsed.faults).toEqual([]);
  });

  it("reports two entries of one name once, and keeps both as written", () => {
    const parsed = parseTreeObject(
      treeObject([
        ["100644", "nginx.conf"],
        ["100644", "nginx.conf"],
        ["100644", "nginx.conf"],
        ["100644", "z"],
      ]),
    );
    expect(parsed.entries).toHaveLength(4);
    expect(parsed.faults).toEqual([{ kind: "duplicate", name: "nginx.conf" }]);
  });

  it("reports a file and a directory of one name as duplicates, though they sort apart", () => {
    expect(
      parseTreeObject(
        treeObject([
          ["100644", "conf"],
          ["100644", "conf.d"],
          ["40000", "conf"],
        ]),
      ).faults,
    ).toEqual([{ kind: "duplicate", name: "conf" }]);
  });

  it("reports an entry out of git's order, comparing a directory's name as if it ended in '/'", () => {
    expect(
      parseTreeObject(
        treeObject([
          ["100644", "b"],
          ["100644", "a"],
        ]),
      ).faults,
    ).toEqual([{ kind: "unsorted", name: "a" }]);
    // "a.b" < "a/": the file comes first, the directory "a" second.
    expect(
      parseTreeObject(
        treeObject([
          ["40000", "a"],
          ["100644", "a.b"],
        ]),
      ).faults,
    ).toEqual([{ kind: "unsorted", name: "a.b" }]);
    expect(
      parseTreeObject(
        treeObject([
          ["100644", "a.b"],
          ["40000", "a"],
        ]),
      ).faults,
    ).toEqual([]);
  });

  it("compares names as bytes, as git does, not as UTF-16", () => {
    // U+FF21 (EF BC A1) sorts before U+1F600 (F0 9F 98 80) as bytes, after it as UTF-16 code units.
    expect(
      parseTreeObject(
        treeObject([
          ["100644", "\uff21"],
          ["100644", "\u{1f600}"],
        ]),
      ).faults,
    ).toEqual([]);
    expect(
      parseTreeObject(
        treeObject([
          ["100644", "\u{1f600}"],
          ["100644", "\uff21"],
        ]),
      ).faults,
    ).toEqual([{ kind: "unsorted", name: "\uff21" }]);
  });

  it("reports modes git does not write, and takes its two legacy spellings", () => {
    const parsed = parseTreeObject(
      treeObject([
        ["040000", "a-dir"],
        ["100600", "b"],
        ["100664", "c"],
        ["100744", "d"],
        ["0100644", "e"],
        ["40755", "f"],
      ]),
    );
    expect(parsed.faults).toEqual([
      { kind: "mode", name: "b", mode: "100600" },
      { kind: "mode", name: "d", mode: "100744" },
      { kind: "mode", name: "e", mode: "0100644" },
      { kind: "mode", name: "f", mode: "40755" },
    ]);
  });

  it("reports a name that is not UTF-8: decoded, it is another name, and two such can become one", () => {
    const parsed = parseTreeObject(
      treeObject([
        ["100644", Buffer.from([0x63, 0x61, 0x66, 0xe9])],
        ["100644", Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x21])],
      ]),
    );
    expect(parsed.faults).toEqual([
      { kind: "encoding", name: "caf\ufffd" },
      { kind: "encoding", name: "caf\ufffd!" },
    ]);
  });

  it("refuses bytes that are not a tree", () => {
    expect(() => parseTreeObject(Buffer.from("100644 name-without-oid\0"))).toThrow(/malformed tree object/);
  });
});
