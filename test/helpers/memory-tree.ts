import { createHash } from "node:crypto";
import type { Dir, Entry } from "../../src/core/tree.js";

/**
 * Builds git trees in memory, with the oids git itself would give them, from
 * `{ "web01/nginx/nginx.conf": "v1" }`. A value `{ symlink }` or `{ submodule }`
 * makes those entries; `{ mode: "100755", content }` an executable. Names git
 * itself would refuse (`..`, `.git`, control characters) are kept as given,
 * so bad trees can be written too.
 */
export type MemoryFile = string | { content: string; mode: "100644" | "100755" } | { symlink: string } | { submodule: string };

export interface GitObject {
  type: "blob" | "tree";
  oid: string;
  body: Buffer;
}

class Leaf {
  constructor(readonly file: MemoryFile) {}
}

/** The tree, and every object in it (children before parents), for writing to a real repository. */
export function memoryTree(files: Record<string, MemoryFile>, objects: GitObject[] = []): Dir {
  const root: Record<string, unknown> = {};
  for (const [path, file] of Object.entries(files)) {
    const parts = path.split("/");
    let dir = root;
    for (const part of parts.slice(0, -1)) dir = (dir[part] ??= {}) as Record<string, unknown>;
    dir[parts[parts.length - 1]!] = new Leaf(file);
  }
  return build(root, objects);
}

/** The directory at a path below a tree, if there is one. */
export function dirAt(root: Dir, path: string): Dir | undefined {
  let dir: Entry | undefined = root;
  for (const part of path.split("/").filter(Boolean)) dir = dir?.kind === "dir" ? dir.entries?.get(part) : undefined;
  return dir?.kind === "dir" ? dir : undefined;
}

function build(node: Record<string, unknown>, objects: GitObject[]): Dir {
  const entries = new Map<string, Entry>();
  for (const [name, child] of Object.entries(node)) {
    if (!(child instanceof Leaf)) {
      entries.set(name, build(child as Record<string, unknown>, objects));
      continue;
    }
    const leaf = child.file;
    if (typeof leaf === "string" || "content" in leaf) {
      const content = typeof leaf === "string" ? leaf : leaf.content;
      const body = Buffer.from(content);
      const oid = store(objects, "blob", body);
      entries.set(name, { kind: "file", mode: typeof leaf === "string" ? "100644" : leaf.mode, oid, size: body.length, ...(name === "manifest.json" ? { content } : {}) });
    } else if ("symlink" in leaf) entries.set(name, { kind: "symlink", mode: "120000", oid: store(objects, "blob", Buffer.from(leaf.symlink)) });
    else entries.set(name, { kind: "submodule", mode: "160000", oid: leaf.submodule });
  }
  return { kind: "dir", oid: store(objects, "tree", treeBody(entries)), entries };
}

const MODES = { dir: "40000", symlink: "120000", submodule: "160000" } as const;

function treeBody(entries: Map<string, Entry>): Buffer {
  // git orders tree entries by name, as if directories ended in '/'.
  const key = (name: string, entry: Entry) => Buffer.from(entry.kind === "dir" ? `${name}/` : name);
  const sorted = [...entries].sort(([a, x], [b, y]) => Buffer.compare(key(a, x), key(b, y)));
  return Buffer.concat(sorted.map(([name, entry]) => Buffer.concat([Buffer.from(`${entry.kind === "file" ? entry.mode : MODES[entry.kind]} ${name}\0`), Buffer.from(entry.oid, "hex")])));
}

function store(objects: GitObject[], type: GitObject["type"], body: Buffer): string {
  const oid = createHash("sha1").update(`${type} ${body.length}\0`).update(body).digest("hex");
  objects.push({ type, oid, body });
  return oid;
}
