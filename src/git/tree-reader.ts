import git from "isomorphic-git";
import { MODE_KIND, type Dir, type Entry } from "../core/tree.js";
import { repoFs } from "./atomic-fs.js";
import { packNames } from "./packs.js";

/**
 * How many parsed trees and commits a reader keeps: objects never change, and
 * the ones read again are those of the last few commits (a plan, then its
 * deployment), not the history's. Within one plan, the pair reader reads
 * each differing subtree about once, so even a plan of 1,000 hosts needs few.
 */
const KEPT_OBJECTS = 512;

/** Reads git objects of one repository (a source mirror or the store). */
export class TreeReader {
  private packCache = {};
  private packs = new Set<string>();
  private holders = 0;
  private readonly trees = new Map<string, Promise<Array<{ name: string; mode: string; oid: string }>>>();
  private readonly commits = new Map<string, Promise<string>>();

  constructor(readonly gitdir: string) {}

  /** isomorphic-git's cache for this repository: each pack's index, and each pack read whole. */
  get cache(): object {
    return this.packCache;
  }

  /**
   * Keeps the pack cache while the caller works. isomorphic-git holds each
   * pack it reads whole, with an index of every object, so a long-lived
   * process would otherwise hold the repo's size for good: when the last
   * holder lets go, the cache goes.
   */
  hold(): () => void {
    this.holders++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      if (--this.holders === 0) this.packCache = {};
    };
  }

  /**
   * Drops the pack cache when a pack it may hold is gone (merged by
   * consolidatePacks, in this process or another): its memory goes with it.
   * Called after each fetch.
   */
  async notePacks(): Promise<void> {
    const now = new Set(await packNames(`${this.gitdir}/objects/pack`));
    if ([...this.packs].some((name) => !now.has(name))) this.packCache = {};
    this.packs = now;
  }

  /**
   * A tree's entries, parsed from the raw object: isomorphic-git's readTree
   * throws on names such as `.git` or `..`, which validation must see and name.
   */
  entries(oid: string): Promise<Array<{ name: string; mode: string; oid: string }>> {
    return remember(this.trees, oid, () => this.readEntries(oid));
  }

  private async readEntries(oid: string): Promise<Array<{ name: string; mode: string; oid: string }>> {
    const { object, type } = await git.readObject({ fs: repoFs(this.gitdir), gitdir: this.gitdir, oid, format: "content", cache: this.cache });
    if (type !== "tree") throw new Error(`${oid} is a ${type}, not a tree`);
    return parseTree(Buffer.from(object as Uint8Array));
  }

  async blob(oid: string): Promise<Uint8Array> {
    return (await git.readBlob({ fs: repoFs(this.gitdir), gitdir: this.gitdir, oid, cache: this.cache })).blob;
  }

  commitTree(commit: string): Promise<string> {
    return remember(this.commits, commit, () => git.readCommit({ fs: repoFs(this.gitdir), gitdir: this.gitdir, oid: commit, cache: this.cache }).then((result) => detached(result.commit.tree)));
  }

  /** The oid of the tree at a path below a root tree, or undefined if there is none. */
  async treeAt(root: string, path: string): Promise<string | undefined> {
    let oid = root;
    for (const part of path.split("/").filter(Boolean)) {
      const entry = (await this.entries(oid)).find((candidate) => candidate.name === part);
      if (!entry || MODE_KIND[entry.mode] !== "dir") return undefined;
      oid = entry.oid;
    }
    return oid;
  }
}

/**
 * A copy of a string that holds only itself: V8 keeps a string cut from a
 * larger one as a view of it, so an oid parsed from a commit and kept in a
 * cache would keep the commit's whole text (the soak's heap snapshots).
 */
export function detached(text: string): string {
  return Buffer.from(text).toString();
}

/** The value kept for `key`, made once; the least recently used go past `limit`, and failures are not kept. */
export function remember<T>(kept: Map<string, Promise<T>>, key: string, make: () => Promise<T>, limit = KEPT_OBJECTS): Promise<T> {
  let value = kept.get(key);
  if (value) kept.delete(key);
  else {
    value = make();
    value.catch(() => kept.delete(key));
  }
  kept.set(key, value);
  if (kept.size > limit) kept.delete(kept.keys().next().value!);
  return value;
}

/** git's tree format: `<mode> <name>\0<20-byte oid>`, repeated. */
export function parseTree(body: Buffer): Array<{ name: string; mode: string; oid: string }> {
  const entries = [];
  for (let at = 0; at < body.length; ) {
    const space = body.indexOf(0x20, at);
    const nul = body.indexOf(0, space);
    if (space < 0 || nul < 0 || nul + 21 > body.length) throw new Error("malformed tree object");
    entries.push({ mode: body.toString("latin1", at, space), name: body.toString("utf8", space + 1, nul), oid: body.toString("hex", nul + 1, nul + 21) });
    at = nul + 21;
  }
  return entries;
}

export interface TreeSide {
  reader: TreeReader;
  oid: string;
  /** Read each file's size (for the size caps). */
  sizes: boolean;
}

/** Files whose content the core reads: `<host>/<app>/manifest.json`, relative to the environment's tree. */
const wantsContent = (path: string) => /^[^/]+\/[^/]+\/manifest\.json$/.test(path);

/**
 * Reads two trees side by side, descending only where their oids differ: an
 * identical subtree is returned as its oid alone, unread. With one side
 * missing, the other is read whole.
 */
export async function readTreePair(a: TreeSide | undefined, b: TreeSide | undefined, path = ""): Promise<[Dir | undefined, Dir | undefined]> {
  if (a && b && a.oid === b.oid) return [{ kind: "dir", oid: a.oid }, { kind: "dir", oid: b.oid }];
  const [listA, listB] = await Promise.all([a?.reader.entries(a.oid), b?.reader.entries(b.oid)]);
  const byName = (list: typeof listA) => new Map((list ?? []).map((entry) => [entry.name, entry]));
  const mapA = byName(listA);
  const mapB = byName(listB);
  const outA = new Map<string, Entry>();
  const outB = new Map<string, Entry>();
  await Promise.all(
    [...new Set([...mapA.keys(), ...mapB.keys()])].map(async (name) => {
      const ea = mapA.get(name);
      const eb = mapB.get(name);
      const child = `${path}${name}`;
      const dirA = ea && MODE_KIND[ea.mode] === "dir" && a ? { ...a, oid: ea.oid } : undefined;
      const dirB = eb && MODE_KIND[eb.mode] === "dir" && b ? { ...b, oid: eb.oid } : undefined;
      if (dirA || dirB) {
        const [da, db] = await readTreePair(dirA, dirB, `${child}/`);
        if (da) outA.set(name, da);
        if (db) outB.set(name, db);
      }
      if (ea && !dirA && a) outA.set(name, await leaf(a, ea, child));
      if (eb && !dirB && b) outB.set(name, await leaf(b, eb, child));
    }),
  );
  return [a ? { kind: "dir", oid: a.oid, entries: outA } : undefined, b ? { kind: "dir", oid: b.oid, entries: outB } : undefined];
}

async function leaf(side: TreeSide, entry: { mode: string; oid: string }, path: string): Promise<Entry> {
  const kind = MODE_KIND[entry.mode];
  if (kind === "symlink" || kind === "submodule") return { kind, oid: entry.oid, mode: entry.mode };
  const mode = entry.mode === "100755" ? "100755" : "100644";
  const content = wantsContent(path);
  if (!side.sizes && !content) return { kind: "file", oid: entry.oid, mode };
  const bytes = await side.reader.blob(entry.oid);
  return { kind: "file", oid: entry.oid, mode, size: bytes.length, ...(content ? { content: Buffer.from(bytes).toString("utf8") } : {}) };
}
