import { createHash } from "node:crypto";
import type { TreeEntry } from "./tree.js";

/**
 * Git's object ids, computed: a blob's and a tree's oid follow from their
 * content alone, so effective trees built from layers get the oid git would
 * give them, whatever layers produced them, before anything is written.
 */

export type FileMode = "100644" | "100755";

/** A git object: its type, id and the bytes git hashes after the header. */
export interface GitObject {
  type: "blob" | "tree";
  oid: string;
  body: Buffer;
  /** A tree's entries in git's order, as built: read back without parsing the body. */
  entries?: readonly TreeEntry[];
}

export function blobObject(body: Buffer): GitObject {
  return { type: "blob", oid: objectId("blob", body), body };
}

/** A file of a tree to build, by its path ('/'-separated) below the tree's root. */
export interface TreeFile {
  oid: string;
  mode: FileMode;
}

/**
 * The tree objects for a set of files, built bottom-up: the root's oid and
 * every tree object, root last. An empty set of files is git's empty tree.
 */
export function buildTrees(files: ReadonlyMap<string, TreeFile>): { oid: string; trees: GitObject[] } {
  interface Node {
    files: Map<string, TreeFile>;
    dirs: Map<string, Node>;
  }
  const root: Node = { files: new Map(), dirs: new Map() };
  for (const [path, file] of files) {
    const names = path.split("/");
    let node = root;
    for (const name of names.slice(0, -1)) {
      let next = node.dirs.get(name);
      if (!next) node.dirs.set(name, (next = { files: new Map(), dirs: new Map() }));
      node = next;
    }
    node.files.set(names.at(-1)!, file);
  }
  const trees: GitObject[] = [];
  const write = (node: Node): string => {
    const entries = [
      ...[...node.files].map(([name, file]) => ({ name, mode: file.mode, oid: file.oid, dir: false })),
      ...[...node.dirs].map(([name, dir]) => ({ name, mode: "40000", oid: write(dir), dir: true })),
    ];
    const tree = treeObject(entries);
    trees.push(tree);
    return tree.oid;
  };
  return { oid: write(root), trees };
}

/** A tree object from its entries, in git's order: names compared as bytes, a directory's as if it ended in '/'. */
export function treeObject(entries: ReadonlyArray<{ name: string; mode: string; oid: string; dir: boolean }>): GitObject {
  const keyed = entries.map((entry) => ({ entry, key: entry.dir ? `${entry.name}/` : entry.name }));
  keyed.sort((a, b) => byteOrder(a.key, b.key));
  // Written in place: a host's tree is built for every host of a fleet on each plan.
  let size = 0;
  for (const { entry } of keyed) size += entry.mode.length + Buffer.byteLength(entry.name) + 22;
  const body = Buffer.alloc(size);
  let at = 0;
  for (const { entry } of keyed) {
    at += body.write(entry.mode, at, "latin1");
    body[at++] = 0x20;
    at += body.write(entry.name, at, "utf8");
    body[at++] = 0;
    at += body.write(entry.oid, at, "hex");
  }
  return { type: "tree", oid: objectId("tree", body), body, entries: keyed.map(({ entry: { name, mode, oid } }) => ({ name, mode, oid })) };
}

/** Two names in the order of their UTF-8 bytes: string order is the same below U+D800, where surrogate pairs begin. */
function byteOrder(a: string, b: string): number {
  if (BELOW_SURROGATES.test(a) && BELOW_SURROGATES.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
const BELOW_SURROGATES = /^[^\ud800-\uffff]*$/;

function objectId(type: GitObject["type"], body: Buffer): string {
  return createHash("sha1").update(`${type} ${body.length}\0`).update(body).digest("hex");
}
