import { isUtf8 } from "node:buffer";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { inflateSync } from "node:zlib";
import git from "isomorphic-git";
import type { GitObject } from "../core/git-objects.js";
import { MODE_KIND, type Dir, type Entry, type PathFault, type TreeEntry, type TreeFault } from "../core/tree.js";
import { repoFs } from "./atomic-fs.js";
import { packNames } from "./packs.js";

/**
 * How many parsed trees and commits a reader keeps: objects never change, and
 * the ones read again are those of the last few commits (a plan, then its
 * deployment), not the history's. Within one plan, the pair reader reads
 * each differing subtree about once, so even a plan of 1,000 hosts needs few.
 */
const KEPT_OBJECTS = 512;

/** A tree object's entries in the order written, and what is wrong with it. */
export interface ParsedTree {
  entries: TreeEntry[];
  faults: TreeFault[];
}

/** Where trees and blobs are read from: a repository (TreeReader), or memory in tests. */
export interface TreeObjects {
  tree(oid: string): Promise<ParsedTree>;
  blob(oid: string): Promise<Uint8Array>;
}

/** Reads git objects of one repository (a source mirror or the store). */
export class TreeReader implements TreeObjects {
  private packCache = {};
  private packs = new Set<string>();
  private holders = 0;
  private readonly trees = new Map<string, Promise<ParsedTree>>();
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
   * A tree, parsed from the raw object: isomorphic-git's readTree throws on
   * names such as `.git` or `..`, and sorts and normalizes what it reads,
   * while validation must see and name every one of them as written.
   */
  tree(oid: string): Promise<ParsedTree> {
    return remember(this.trees, oid, () => this.readTree(oid));
  }

  async entries(oid: string): Promise<TreeEntry[]> {
    return (await this.tree(oid)).entries;
  }

  private async readTree(oid: string): Promise<ParsedTree> {
    const { object, type } =
      this.readLoose(oid) ??
      (await git.readObject({ fs: repoFs(this.gitdir), gitdir: this.gitdir, oid, format: "content", cache: this.cache }));
    if (type !== "tree") throw new Error(`${oid} is a ${type}, not a tree`);
    return parseTreeObject(Buffer.from(object as Uint8Array));
  }

  /**
   * A loose object (the store writes only those), or undefined when it is
   * packed. Read in one go and inflated by node's zlib, a tree takes a sixth
   * of the time isomorphic-git takes, whose inflate is JavaScript: a plan of
   * 1,000 hosts reads 2,000 trees from the store.
   */
  private readLoose(oid: string): { object: Buffer; type: string } | undefined {
    let deflated: Buffer;
    try {
      deflated = readFileSync(loosePath(this.gitdir, oid));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    const raw = inflateSync(deflated);
    const space = raw.indexOf(0x20);
    const nul = raw.indexOf(0, space);
    const object = raw.subarray(nul + 1);
    if (createHash("sha1").update(raw).digest("hex") !== oid || Number(raw.toString("latin1", space + 1, nul)) !== object.length)
      throw new Error(`object ${oid} in ${this.gitdir} is corrupt: its content does not hash to its name (git fsck names the damage)`);
    return { object, type: raw.toString("latin1", 0, space) };
  }

  async blob(oid: string): Promise<Uint8Array> {
    return (await git.readBlob({ fs: repoFs(this.gitdir), gitdir: this.gitdir, oid, cache: this.cache })).blob;
  }

  commitTree(commit: string): Promise<string> {
    return remember(this.commits, commit, () =>
      git
        .readCommit({ fs: repoFs(this.gitdir), gitdir: this.gitdir, oid: commit, cache: this.cache })
        .then((result) => detached(result.commit.tree)),
    );
  }

  /** The oid of the tree at a path below a root tree, or undefined if there is none. */
  async treeAt(root: string, path: string): Promise<string | undefined> {
    return (await walkToTree(this, root, path)).oid;
  }
}

/**
 * The tree at a path below a root tree (no oid if no directory is there), and
 * the faults of the trees on the way that concern the names the path
 * follows: a path through a tree with two `clusters` could lead into either.
 */
export async function walkToTree(objects: TreeObjects, root: string, path: string): Promise<{ oid?: string; faults: PathFault[] }> {
  const faults: PathFault[] = [];
  let oid = root;
  let dir = "";
  for (const part of path.split("/").filter(Boolean)) {
    const tree = await objects.tree(oid);
    faults.push(...tree.faults.filter((fault) => fault.name === part).map((fault) => ({ dir, fault })));
    const entry = tree.entries.find((candidate) => candidate.name === part);
    if (!entry || MODE_KIND[entry.mode] !== "dir") return { faults };
    oid = entry.oid;
    dir = dir ? `${dir}/${part}` : part;
  }
  return { oid, faults };
}

/** Where a repository keeps an object loose. */
export const loosePath = (gitdir: string, oid: string) => `${gitdir}/objects/${oid.slice(0, 2)}/${oid.slice(2)}`;

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

/** A tree object's entries, in the order written. */
export function parseTree(body: Buffer): TreeEntry[] {
  return parseTreeObject(body).entries;
}

/**
 * git's tree format, `<mode> <name>\0<20-byte oid>` repeated, with the faults
 * that let one object be read two ways. The object is read as written, faults
 * and all: refusing it is validation's part, which names the path.
 */
export function parseTreeObject(body: Buffer): ParsedTree {
  const entries: TreeEntry[] = [];
  const faults: TreeFault[] = [];
  const order = new TreeOrder();
  for (let at = 0; at < body.length;) {
    const space = body.indexOf(0x20, at);
    const nul = body.indexOf(0, space);
    if (space < 0 || nul < 0 || nul + 21 > body.length) throw new Error("malformed tree object");
    const rawName = body.subarray(space + 1, nul);
    const entry = {
      mode: body.toString("latin1", at, space),
      name: rawName.toString("utf8"),
      oid: body.toString("hex", nul + 1, nul + 21),
    };
    entries.push(entry);
    const placed = order.place(rawName, entry.mode);
    if (placed !== "ok") faults.push({ kind: placed, name: entry.name });
    // Decoded, a name that is not UTF-8 is another name (and two such may become one).
    if (!isUtf8(rawName)) faults.push({ kind: "encoding", name: entry.name });
    if (!Object.hasOwn(MODE_KIND, entry.mode)) faults.push({ kind: "mode", name: entry.name, mode: entry.mode });
    at = nul + 21;
  }
  return { entries, faults };
}

/**
 * A tree built in memory, read as parseTreeObject reads its body, without
 * parsing it: sorted and valid UTF-8 by construction, it can only hold a
 * name twice (a layer's app and a host's file of one name) or a mode copied
 * from a layer that git does not read as one thing.
 */
export function parseBuiltTree(object: GitObject): ParsedTree {
  if (!object.entries) return parseTreeObject(object.body);
  const faults: TreeFault[] = [];
  const seen = new Set<string>();
  const doubled = new Set<string>();
  for (const { name, mode } of object.entries) {
    if (!seen.has(name)) seen.add(name);
    else if (!doubled.has(name)) {
      doubled.add(name);
      faults.push({ kind: "duplicate", name });
    }
    if (!Object.hasOwn(MODE_KIND, mode)) faults.push({ kind: "mode", name, mode });
  }
  return { entries: [...object.entries], faults };
}

/**
 * git's order of tree entries, checked one entry at a time: names compared as
 * bytes, a directory's as if it ended in '/'. A name seen before is a
 * duplicate, reported once however many times it comes back; the two entries
 * of a file and a directory of one name are duplicates too (git fsck says so),
 * though they sort apart.
 */
class TreeOrder {
  private readonly seen = new Set<string>();
  private readonly doubled = new Set<string>();
  private last: Buffer | undefined;

  place(rawName: Buffer, mode: string): "ok" | "duplicate" | "unsorted" {
    // One character per byte: a Set key that compares as git compares names.
    const name = rawName.toString("latin1");
    const key = MODE_KIND[mode] === "dir" ? Buffer.concat([rawName, Buffer.from("/")]) : rawName;
    const previous = this.last;
    this.last = key;
    if (this.seen.has(name)) {
      if (this.doubled.has(name)) return "ok";
      this.doubled.add(name);
      return "duplicate";
    }
    this.seen.add(name);
    return previous && Buffer.compare(key, previous) < 0 ? "unsorted" : "ok";
  }
}

export interface TreeSide {
  reader: TreeObjects;
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
export async function readTreePair(
  a: TreeSide | undefined,
  b: TreeSide | undefined,
  path = "",
): Promise<[Dir | undefined, Dir | undefined]> {
  if (a && b && a.oid === b.oid)
    return [
      { kind: "dir", oid: a.oid },
      { kind: "dir", oid: b.oid },
    ];
  const [treeA, treeB] = await Promise.all([a?.reader.tree(a.oid), b?.reader.tree(b.oid)]);
  // Of two entries with one name the last is kept; the tree's faults say so, and validation refuses it.
  const byName = (tree: ParsedTree | undefined) => new Map((tree?.entries ?? []).map((entry) => [entry.name, entry]));
  const mapA = byName(treeA);
  const mapB = byName(treeB);
  const outA = new Map<string, Entry>();
  const outB = new Map<string, Entry>();
  // A plan of 1,000 hosts meets 100,000 files here: a file whose size is known is placed at once, without a promise.
  const pending: Array<Promise<unknown>> = [];
  const put = (out: Map<string, Entry>, name: string, entry: Entry | Promise<Entry>) => {
    if (entry instanceof Promise) pending.push(entry.then((read) => out.set(name, read)));
    else out.set(name, entry);
  };
  for (const name of new Set([...mapA.keys(), ...mapB.keys()])) {
    const ea = mapA.get(name);
    const eb = mapB.get(name);
    const child = `${path}${name}`;
    const dirA = ea && MODE_KIND[ea.mode] === "dir" && a ? { ...a, oid: ea.oid } : undefined;
    const dirB = eb && MODE_KIND[eb.mode] === "dir" && b ? { ...b, oid: eb.oid } : undefined;
    if (dirA || dirB)
      pending.push(
        readTreePair(dirA, dirB, `${child}/`).then(([da, db]) => {
          if (da) outA.set(name, da);
          if (db) outB.set(name, db);
        }),
      );
    if (ea && !dirA && a) put(outA, name, leaf(a, ea, child));
    if (eb && !dirB && b) put(outB, name, leaf(b, eb, child));
  }
  await Promise.all(pending);
  return [a ? readDir(a.oid, outA, treeA) : undefined, b ? readDir(b.oid, outB, treeB) : undefined];
}

function readDir(oid: string, entries: ReadonlyMap<string, Entry>, tree: ParsedTree | undefined): Dir {
  const faults = tree?.faults ?? [];
  return { kind: "dir", oid, entries, ...(faults.length > 0 ? { faults } : {}) };
}

function leaf(side: TreeSide, entry: TreeEntry, path: string): Entry | Promise<Entry> {
  const kind = MODE_KIND[entry.mode];
  if (kind === "symlink" || kind === "submodule") return { kind, oid: entry.oid, mode: entry.mode };
  // A mode git does not read as one thing is a fault of its tree, which validation refuses; the object may not even be a blob.
  if (!kind) return { kind: "file", oid: entry.oid, mode: "100644" };
  const mode = entry.mode === "100755" ? "100755" : "100644";
  if (wantsContent(path))
    return side.reader
      .blob(entry.oid)
      .then((bytes) => ({ kind: "file", oid: entry.oid, mode, size: bytes.length, content: Buffer.from(bytes).toString("utf8") }));
  if (!side.sizes) return { kind: "file", oid: entry.oid, mode };
  const size = blobSize(side.reader, entry.oid);
  return typeof size === "number"
    ? { kind: "file", oid: entry.oid, mode, size }
    : size.then((read) => ({ kind: "file", oid: entry.oid, mode, size: read }));
}

/**
 * Blob sizes by oid: a fact of the content, so one file shared by a
 * thousand hosts (a layer's, or the same bytes by hand) is read once.
 */
const sizes = new Map<string, number | Promise<number>>();
const KEPT_SIZES = 65_536;

function blobSize(reader: TreeObjects, oid: string): number | Promise<number> {
  const known = sizes.get(oid);
  if (known !== undefined) return known;
  const read = reader.blob(oid).then((bytes) => {
    sizes.set(oid, bytes.length);
    return bytes.length;
  });
  read.catch(() => sizes.delete(oid));
  sizes.set(oid, read);
  // The oldest go first: the sizes a plan needs again are those it just read.
  if (sizes.size > KEPT_SIZES) sizes.delete(sizes.keys().next().value!);
  return read;
}
