import { createHash } from "node:crypto";
import type { Dir, Entry, TreeEntry } from "../../src/core/tree.js";
import { parseTreeObject, type TreeObjects } from "../../src/git/tree-reader.js";

/**
 * Builds git trees in memory, with the oids git itself would give them, from
 * `{ "web01/nginx/nginx.conf": "v1" }`. A value `{ symlink }` or `{ submodule }`
 * makes those entries; `{ mode: "100755", content }` an executable (any mode
 * is written as given, so `100744` makes a bad one). Names git itself would
 * refuse (`..`, `.git`, control characters) are kept as given, so bad trees
 * can be written too.
 */
export type MemoryFile = string | { content: string; mode: string } | { symlink: string } | { submodule: string };

/** What a crafted tree holds beyond its files: what git's index never writes (git fsck's errors). */
export interface MemoryFaults {
  /** A second entry at a path the files already have (duplicateEntries): a file, or `{ tree: files }` for a directory. */
  duplicates?: Record<string, MemoryFile | { tree: Record<string, MemoryFile> }>;
  /** Directories ("" for the root) whose entries are written in the order of these names, not git's (treeNotSorted). */
  order?: Record<string, string[]>;
}

export interface GitObject {
  type: "blob" | "tree";
  oid: string;
  body: Buffer;
  /** A tree's entries as written, and whether that is git's order, the one `git mktree` writes. */
  tree?: { entries: TreeEntry[]; gitOrder: boolean };
}

class Leaf {
  constructor(readonly file: MemoryFile) {}
}

type Node = { [name: string]: Node | Leaf };

/** The tree, and every object in it (children before parents), for writing to a real repository. */
export function memoryTree(files: Record<string, MemoryFile>, objects: GitObject[] = [], faults: MemoryFaults = {}): Dir {
  return build(nodeOf(files), objects, "", faults);
}

/**
 * The objects as a repository would give them to Tidemark, parsed by its own
 * tree parser: what validation sees of a crafted tree, faults and all.
 */
export function memoryObjects(objects: readonly GitObject[]): TreeObjects {
  const byOid = new Map(objects.map((object) => [object.oid, object]));
  const body = (oid: string, type: GitObject["type"]) => {
    const object = byOid.get(oid);
    if (object?.type !== type) throw new Error(`no ${type} ${oid} among the objects built`);
    return object.body;
  };
  return {
    tree: (oid) => Promise.resolve(parseTreeObject(body(oid, "tree"))),
    blob: (oid) => Promise.resolve(new Uint8Array(body(oid, "blob"))),
  };
}

/** The directory at a path below a tree, if there is one. */
export function dirAt(root: Dir, path: string): Dir | undefined {
  let dir: Entry | undefined = root;
  for (const part of path.split("/").filter(Boolean)) dir = dir?.kind === "dir" ? dir.entries?.get(part) : undefined;
  return dir?.kind === "dir" ? dir : undefined;
}

function nodeOf(files: Record<string, MemoryFile>): Node {
  const root: Node = {};
  for (const [path, file] of Object.entries(files)) {
    const parts = path.split("/");
    let dir = root;
    for (const part of parts.slice(0, -1)) dir = (dir[part] ??= {}) as Node;
    dir[parts[parts.length - 1]!] = new Leaf(file);
  }
  return root;
}

/** One entry as written in its tree: its mode, and what Tidemark reads of it. */
type Written = { name: string; mode: string; entry: Entry };

function build(node: Node, objects: GitObject[], path: string, faults: MemoryFaults): Dir {
  const written: Written[] = Object.entries(node).map(([name, child]) => write(name, child, objects, `${path}${name}`, faults));
  for (const [at, extra] of Object.entries(faults.duplicates ?? {})) {
    const slash = at.lastIndexOf("/");
    if (at.slice(0, slash + 1) !== path) continue;
    const name = at.slice(slash + 1);
    written.push(
      typeof extra === "object" && "tree" in extra
        ? write(name, nodeOf(extra.tree), objects, at, {})
        : write(name, new Leaf(extra), objects, at, {}),
    );
  }
  const order = faults.order?.[path.replace(/\/$/, "")];
  const sorted = order ? written.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name)) : written.sort(byGitOrder);
  const body = Buffer.concat(
    sorted.map(({ name, mode, entry }) => Buffer.concat([Buffer.from(`${mode} ${name}\0`), Buffer.from(entry.oid, "hex")])),
  );
  const oid = store(objects, "tree", body, {
    entries: sorted.map(({ name, mode, entry }) => ({ name, mode, oid: entry.oid })),
    gitOrder: !order,
  });
  // Of two entries of one name the last is kept, as Tidemark's reader does.
  return { kind: "dir", oid, entries: new Map(sorted.map(({ name, entry }) => [name, entry])) };
}

function write(name: string, child: Node | Leaf, objects: GitObject[], path: string, faults: MemoryFaults): Written {
  if (!(child instanceof Leaf)) return { name, mode: "40000", entry: build(child, objects, `${path}/`, faults) };
  const leaf = child.file;
  if (typeof leaf === "string" || "content" in leaf) {
    const content = typeof leaf === "string" ? leaf : leaf.content;
    const mode = typeof leaf === "string" ? "100644" : leaf.mode;
    const body = Buffer.from(content);
    const oid = store(objects, "blob", body);
    return {
      name,
      mode,
      entry: {
        kind: "file",
        mode: mode === "100755" ? "100755" : "100644",
        oid,
        size: body.length,
        ...(name === "manifest.json" ? { content } : {}),
      },
    };
  }
  if ("symlink" in leaf)
    return { name, mode: "120000", entry: { kind: "symlink", mode: "120000", oid: store(objects, "blob", Buffer.from(leaf.symlink)) } };
  return { name, mode: "160000", entry: { kind: "submodule", mode: "160000", oid: leaf.submodule } };
}

/** git's order of tree entries: by name as bytes, a directory's as if it ended in '/' (a stable sort keeps duplicates as given). */
function byGitOrder(a: Written, b: Written): number {
  const key = ({ name, entry }: Written) => Buffer.from(entry.kind === "dir" ? `${name}/` : name);
  return Buffer.compare(key(a), key(b));
}

function store(objects: GitObject[], type: GitObject["type"], body: Buffer, tree?: GitObject["tree"]): string {
  const oid = createHash("sha1").update(`${type} ${body.length}\0`).update(body).digest("hex");
  objects.push({ type, oid, body, ...(tree ? { tree } : {}) });
  return oid;
}
