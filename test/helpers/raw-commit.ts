import { run } from "../bed/proc.js";
import { memoryTree, type GitObject, type MemoryFaults, type MemoryFile } from "./memory-tree.js";

/**
 * Writes files as a commit on a branch of a work repository, object by object,
 * so that trees git's index would refuse or never write (`..`, `.git`,
 * newlines in names, two entries of one name, bad modes, entries out of
 * order) can be pushed to the forge like any other. Trees go through
 * `git mktree`, as a person would craft one, except those out of git's order,
 * which `git mktree` sorts: those are written byte for byte.
 */
export async function writeRawCommit(
  workDir: string,
  branch: string,
  files: Record<string, MemoryFile>,
  message: string,
  faults: MemoryFaults = {},
): Promise<string> {
  const objects: GitObject[] = [];
  const root = memoryTree(files, objects, faults);
  for (const object of objects) {
    const written = object.tree?.gitOrder ? await mktree(workDir, object.tree.entries) : await hashObject(workDir, object);
    if (written !== object.oid)
      throw new Error(
        `git stored ${object.type} ${written}, expected ${object.oid}${object.tree?.gitOrder ? " (git mktree sorts entries of one name in another order?)" : ""}`,
      );
  }
  const identity = {
    ...process.env,
    GIT_AUTHOR_NAME: "Test",
    GIT_AUTHOR_EMAIL: "t@example.invalid",
    GIT_COMMITTER_NAME: "Test",
    GIT_COMMITTER_EMAIL: "t@example.invalid",
  };
  const commit = (await run("git", ["-C", workDir, "commit-tree", root.oid, "-m", message], { env: identity })).stdout.trim();
  await run("git", ["-C", workDir, "update-ref", `refs/heads/${branch}`, commit]);
  return commit;
}

async function hashObject(workDir: string, object: GitObject): Promise<string> {
  return (
    await run("git", ["-C", workDir, "hash-object", "-w", "--literally", "-t", object.type, "--stdin"], { input: object.body })
  ).stdout.trim();
}

/** `git mktree -z` keeps what it is given, duplicates and odd modes included (git 2.39); `--missing`: a submodule's commit is not in the repository. */
async function mktree(workDir: string, entries: ReadonlyArray<{ name: string; mode: string; oid: string }>): Promise<string> {
  const lines = entries.map(({ name, mode, oid }) => `${mode} ${objectType(mode)} ${oid}\t${name}\0`).join("");
  return (await run("git", ["-C", workDir, "mktree", "-z", "--missing"], { input: Buffer.from(lines) })).stdout.trim();
}

function objectType(mode: string): "tree" | "commit" | "blob" {
  return mode === "40000" ? "tree" : mode === "160000" ? "commit" : "blob";
}
