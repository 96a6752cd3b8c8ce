import { createHash } from "node:crypto";

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
  const keyed = entries.map((entry) => ({ ...entry, key: Buffer.from(entry.dir ? `${entry.name}/` : entry.name) }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  const body = Buffer.concat(keyed.flatMap(({ mode, name, oid }) => [Buffer.from(`${mode} ${name}\0`), Buffer.from(oid, "hex")]));
  return { type: "tree", oid: objectId("tree", body), body };
}

function objectId(type: GitObject["type"], body: Buffer): string {
  return createHash("sha1").update(`${type} ${body.length}\0`).update(body).digest("hex");
}
