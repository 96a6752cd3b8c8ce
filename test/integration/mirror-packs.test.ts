import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SourceMirror } from "../../src/git/mirror.js";
import { MAX_PACKS } from "../../src/git/packs.js";
import { TreeReader } from "../../src/git/tree-reader.js";
import { TestBed } from "../bed/bed.js";
import { run } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";

describe("the source mirror over many fetches", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let cache: string;

  beforeAll(async () => {
    bed = await TestBed.up({ forge: true });
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    cache = mkdtempSync(join(tmpdir(), "tidemark-mirror-"));
  });

  afterAll(async () => {
    work?.remove();
    if (cache) rmSync(cache, { recursive: true, force: true });
    await bed?.down();
  });

  // 48 fetches and merges: ~46 s on an idle 2-core machine, more beside other test files.
  it(
    "keeps its packs few by merging them, and every object of every commit stays readable, byte for byte",
    { timeout: 180_000 },
    async () => {
      // Versions of one big file, so that the first fetch's pack holds deltas, then one fetch per push.
      const lines = Array.from({ length: 2000 }, (_, i) => `line ${i} of the configuration\n`);
      const version = (n: number) => lines.map((line, i) => (i % 97 === n % 97 ? `changed in ${n}\n` : line)).join("");
      const commits: string[] = [];
      for (let n = 0; n < 10; n++) commits.push(await work.commit({ "big.conf": version(n), [`files/${n}`]: `${n}\n` }, `version ${n}`));
      await work.push("main");
      const mirror = await SourceMirror.open(bed.forge!.cloneUrl(bed.forgeRepo), cache);
      await mirror.fetch();
      const packs = () => readdirSync(`${mirror.gitdir}/objects/pack`);
      const counts: number[] = [];
      for (let n = 10; n < 10 + 3 * MAX_PACKS; n++) {
        commits.push(await work.commit({ "big.conf": version(n), [`files/${n}`]: `${n}\n` }, `version ${n}`));
        await work.push("main");
        await mirror.fetch();
        // What the long-lived reader cached before a merge must still serve reads after it.
        expect(Buffer.from(await mirror.reader.blob(await blobAt(mirror.reader, commits.at(-1)!, "big.conf"))).toString()).toBe(version(n));
        counts.push(packs().filter((file) => file.endsWith(".idx")).length);
      }
      expect(Math.max(...counts)).toBe(MAX_PACKS);
      expect(counts.at(-1)).toBeLessThan(MAX_PACKS);
      // A merged pack's old .pack files go at the next merge: the disk holds at most one generation more.
      expect(packs().filter((file) => file.endsWith(".pack")).length).toBeLessThanOrEqual(2 * MAX_PACKS);

      // A job's hold keeps the packs in memory while it runs; once let go, they are read again when needed.
      const release = mirror.reader.hold();
      const packCache = mirror.reader.cache;
      await blobAt(mirror.reader, commits[0]!, "big.conf");
      expect(mirror.reader.cache).toBe(packCache);
      release();
      expect(mirror.reader.cache).not.toBe(packCache);
      expect(Buffer.from(await mirror.reader.blob(await blobAt(mirror.reader, commits[0]!, "big.conf"))).toString()).toBe(version(0));

      // A fresh reader, as another process would open the mirror, reads every version as git has it.
      const fresh = new TreeReader(mirror.gitdir);
      for (const [n, commit] of commits.entries()) {
        expect(Buffer.from(await fresh.blob(await blobAt(fresh, commit, "big.conf"))).toString()).toBe(version(n));
      }
      // And git itself finds the mirror whole: every pack and index checks out, no object is missing.
      for (const pack of packs().filter((file) => file.endsWith(".idx")))
        await run("git", ["verify-pack", `${mirror.gitdir}/objects/pack/${pack}`]);
      await run("git", ["--git-dir", mirror.gitdir, "fsck", "--strict", "--no-dangling"]);
    },
  );
});

async function blobAt(reader: TreeReader, commit: string, name: string): Promise<string> {
  const entry = (await reader.entries(await reader.commitTree(commit))).find((candidate) => candidate.name === name);
  if (!entry) throw new Error(`${name} missing at ${commit}`);
  return entry.oid;
}
