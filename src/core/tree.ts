/**
 * Git trees as plain data. A directory whose `entries` is undefined was not
 * read because it is identical (same oid) on the other side of a comparison:
 * that is how planning cost follows the size of a change, not of the tree.
 */
export type Entry = FileEntry | Dir | OtherEntry;

export interface FileEntry {
  kind: "file";
  oid: string;
  mode: "100644" | "100755";
  size?: number;
  /** Read only for the few files whose content the core needs (manifests). */
  content?: string;
}

export interface Dir {
  kind: "dir";
  oid: string;
  entries?: ReadonlyMap<string, Entry>;
}

/** Entries Tidemark refuses to deploy: symlinks (120000) and submodules (160000). */
export interface OtherEntry {
  kind: "symlink" | "submodule";
  oid: string;
  mode: string;
}

export const MODE_KIND: Record<string, Entry["kind"]> = {
  "040000": "dir",
  "40000": "dir",
  "100644": "file",
  "100755": "file",
  "120000": "symlink",
  "160000": "submodule",
};

/** Every file below a fully read directory, by path relative to it. */
export function flattenFiles(dir: Dir, prefix = ""): Map<string, FileEntry | OtherEntry> {
  const files = new Map<string, FileEntry | OtherEntry>();
  for (const [name, entry] of dir.entries ?? []) {
    const path = `${prefix}${name}`;
    if (entry.kind === "dir") for (const [sub, file] of flattenFiles(entry, `${path}/`)) files.set(sub, file);
    else files.set(path, entry);
  }
  return files;
}
