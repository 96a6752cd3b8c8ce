import { createHash } from "node:crypto";
import type { Dir, Entry } from "../../src/core/tree.js";

/**
 * Builds git trees in memory, with the oids git itself would give them, from
 * `{ "web01/nginx/nginx.conf": "v1" }`. A value `{ symlink }` or `{ submodule }`
 * makes those entries; `{ mode: "100755", content }` an executable.
 */
export type MemoryFile = string | { content: string; mode: "100644" | "100755" } | { symlink: string } | { submodule: string };

class Leaf {
  constructor(readonly file: MemoryFile) {}
}

export function memoryTree(files: Record<string, MemoryFile>): Dir {
  const root: Record<string, unknown> = {};
  for (const [path, file] of Object.entries(files)) {
    const parts = path.split("/");
    let dir = root;
    for (const part of parts.slice(0, -1)) dir = (dir[part] ??= {}) as Record<string, unknown>;
    dir[parts[parts.length - 1]!] = new Leaf(file);
  }
  return build(root);
}

function build(node: Record<string, unknown>): Dir {
  const entries = new Map<string, Entry>();
  for (const [name, child] of Object.entries(node)) {
    if (!(child instanceof Leaf)) {
      entries.set(name, build(child as Record<string, unknown>));
      continue;
    }
    const leaf = child.file;
    if (typeof leaf === "string" || "content" in leaf) {
      const content = typeof leaf === "string" ? leaf : leaf.content;
      const bytes = Buffer.from(content);
      entries.set(name, { kind: "file", mode: typeof leaf === "string" ? "100644" : leaf.mode, oid: hash("blob", bytes), size: bytes.length, ...(name === "manifest.json" ? { content } : {}) });
    } else if ("symlink" in leaf) entries.set(name, { kind: "symlink", mode: "120000", oid: hash("blob", Buffer.from(leaf.symlink)) });
    else entries.set(name, { kind: "submodule", mode: "160000", oid: leaf.submodule });
  }
  return { kind: "dir", oid: treeOid(entries), entries };
}

const MODES = { file: "", dir: "40000", symlink: "120000", submodule: "160000" } as const;

function treeOid(entries: Map<string, Entry>): string {
  // git orders tree entries by name, as if directories ended in '/'.
  const sorted = [...entries].sort(([a, x], [b, y]) => Buffer.compare(Buffer.from(x.kind === "dir" ? `${a}/` : a), Buffer.from(y.kind === "dir" ? `${b}/` : b)));
  const body = Buffer.concat(sorted.map(([name, entry]) => Buffer.concat([Buffer.from(`${entry.kind === "file" ? entry.mode : MODES[entry.kind]} ${name}\0`), Buffer.from(entry.oid, "hex")])));
  return hash("tree", body);
}

function hash(type: string, body: Buffer): string {
  return createHash("sha1").update(`${type} ${body.length}\0`).update(body).digest("hex");
}
