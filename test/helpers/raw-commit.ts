import { run } from "../bed/proc.js";
import { memoryTree, type GitObject, type MemoryFile } from "./memory-tree.js";

/**
 * Writes files as a commit on a branch of a work repository, object by object,
 * so that trees git's own tools would refuse (`..`, `.git`, newlines in names)
 * can be pushed to the forge like any other.
 */
export async function writeRawCommit(workDir: string, branch: string, files: Record<string, MemoryFile>, message: string): Promise<string> {
  const objects: GitObject[] = [];
  const root = memoryTree(files, objects);
  for (const object of objects) {
    const { stdout } = await run("git", ["-C", workDir, "hash-object", "-w", "--literally", "-t", object.type, "--stdin"], { input: object.body });
    if (stdout.trim() !== object.oid) throw new Error(`git stored ${object.type} ${stdout.trim()}, expected ${object.oid}`);
  }
  const identity = { ...process.env, GIT_AUTHOR_NAME: "Test", GIT_AUTHOR_EMAIL: "t@example.invalid", GIT_COMMITTER_NAME: "Test", GIT_COMMITTER_EMAIL: "t@example.invalid" };
  const commit = (await run("git", ["-C", workDir, "commit-tree", root.oid, "-m", message], { env: identity })).stdout.trim();
  await run("git", ["-C", workDir, "update-ref", `refs/heads/${branch}`, commit]);
  return commit;
}
