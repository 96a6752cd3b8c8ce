/**
 * Git trees as plain data. A directory whose `entries` is undefined was not
 * read because it is identical (same oid) on the other side of a comparison:
 * that is how planning cost follows the size of a change, not of the tree.
 */
export type Entry = FileEntry | Dir | OtherEntry;

/** A file encrypted with age in git: `db.env.age` deploys as `db.env`, decrypted. */
export const AGE_SUFFIX = ".age";

export interface FileEntry {
  kind: "file";
  oid: string;
  mode: "100644" | "100755";
  size?: number;
  /** Read only for the few files whose content the core needs (manifests). */
  content?: string;
  /** The blob is an age file (`db.env.age` in git): the host gets it decrypted, under its name without `.age`. */
  age?: true;
}

export interface Dir {
  kind: "dir";
  oid: string;
  entries?: ReadonlyMap<string, Entry>;
  /** What is wrong with the tree object itself; set (when it has any) only where `entries` is. */
  faults?: readonly TreeFault[];
}

/** Entries Tidemark refuses to deploy: symlinks (120000) and submodules (160000). */
export interface OtherEntry {
  kind: "symlink" | "submodule";
  oid: string;
  mode: string;
}

/** One entry of a git tree object, as written in it. */
export interface TreeEntry {
  name: string;
  mode: string;
  oid: string;
}

/**
 * The modes Tidemark reads, and as what; any other mode is a fault. Two are
 * legacy spellings that every git reads one way only, so they are taken as
 * such: `040000`, a zero-padded directory (git fsck's `zeroPaddedFilemode`
 * warning), and `100664`, a regular file that early git wrote and still reads
 * as 100644 (fsck flags it only with `--strict`). A mode such as `100744` is
 * refused: Tidemark would deploy it as 100644, git checks it out executable.
 */
export const MODE_KIND: Record<string, Entry["kind"]> = {
  "040000": "dir",
  "40000": "dir",
  "100644": "file",
  "100664": "file",
  "100755": "file",
  "120000": "symlink",
  "160000": "submodule",
};

/**
 * A fault of a tree object that lets it be read two ways, so that what is
 * validated need not be what is deployed: two entries of one name (git
 * fsck's `duplicateEntries`), an entry out of git's order (`treeNotSorted`:
 * git looks names up by that order), a mode git does not read as one thing
 * (`badFilemode`), a name that is not UTF-8 (it would reach the host under
 * another name). git fsck calls the first two errors and GitHub refuses such
 * pushes, but a self-hosted server may accept them.
 */
export type TreeFault = { kind: "duplicate" | "unsorted" | "encoding"; name: string } | { kind: "mode"; name: string; mode: string };

/** A fault met on the way down a path, in the tree at `dir` ("" for the root). */
export interface PathFault {
  dir: string;
  fault: TreeFault;
}

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
