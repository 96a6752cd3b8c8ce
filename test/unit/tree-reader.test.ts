import { mkdtempSync, rmSync } from "node:fs";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import git from "isomorphic-git";
import { afterAll, describe, expect, it } from "vitest";
import { TreeReader } from "../../src/git/tree-reader.js";

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
