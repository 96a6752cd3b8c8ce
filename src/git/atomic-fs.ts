import { randomBytes } from "node:crypto";
import { mkdirSync, promises as fsp, readdirSync, rmSync } from "node:fs";
import { processAlive } from "./process-alive.js";

const TEMP_DIR = "tidemark-tmp";
const byRepo = new Map<string, typeof fsp>();

/**
 * The fs that isomorphic-git uses for one repository: every file is written
 * in the repository's own temp dir and renamed into place, so a process
 * killed mid-write never leaves a truncated object or ref, nor a stray file
 * in objects/ or refs/ that `git fsck` would refuse.
 */
export function repoFs(gitdir: string): { promises: typeof fsp } {
  let promises = byRepo.get(gitdir);
  if (!promises) {
    promises = {
      ...fsp,
      async writeFile(
        path: Parameters<typeof fsp.writeFile>[0],
        data: Parameters<typeof fsp.writeFile>[1],
        options?: Parameters<typeof fsp.writeFile>[2],
      ): Promise<void> {
        const file = tempFile(gitdir);
        try {
          await fsp.writeFile(file, data, options);
          await fsp.rename(file, path as string);
        } catch (error) {
          await fsp.rm(file, { force: true });
          throw error;
        }
      },
    };
    byRepo.set(gitdir, promises);
  }
  return { promises };
}

/** A new file name in the repository's temp dir, on its file system, for a file written aside and renamed into place. */
export function tempFile(gitdir: string): string {
  mkdirSync(`${gitdir}/${TEMP_DIR}`, { recursive: true });
  return `${gitdir}/${TEMP_DIR}/${process.pid}-${randomBytes(6).toString("hex")}`;
}

/** Removes what writers killed mid-write left in the temp dir (files of processes that are gone). */
export function sweepTempFiles(gitdir: string): void {
  let names: string[];
  try {
    names = readdirSync(`${gitdir}/${TEMP_DIR}`);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(name.split("-")[0]);
    if (!processAlive(pid)) rmSync(`${gitdir}/${TEMP_DIR}/${name}`, { force: true });
  }
}
