import { randomBytes } from "node:crypto";
import { link, readFile, rename, rm, writeFile } from "node:fs/promises";
import { TidemarkError } from "../core/errors.js";
import { processAlive } from "./process-alive.js";

/**
 * A lock file in the style of git's, holding the owner's pid, so that a lock
 * left by a process that died is recognised and taken over. It appears with
 * its content in one step (written aside, then hard-linked into place), so a
 * writer killed at any moment never leaves an empty lock that nobody could judge.
 */
export async function withLockFile<T>(path: string, work: () => Promise<T>, { timeoutMs = 60_000 } = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const mine = `${path}.${process.pid}-${randomBytes(4).toString("hex")}`;
  await writeFile(mine, String(process.pid));
  try {
    for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
      try {
        await link(mine, path);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
        const owner = Number((await readFile(path, "utf8").catch(() => "")).trim());
        if (owner > 0 && !processAlive(owner)) await takeOverStale(path, owner);
        else if (Date.now() > deadline)
          throw new TidemarkError(
            "LOCK_HELD",
            `${path} is held by process ${owner || "unknown"}`,
            "wait for that process to finish, or remove the file if that process is gone",
            { cause: error },
          );
        else await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  } finally {
    await rm(mine, { force: true });
  }
  try {
    return await work();
  } finally {
    await rm(path, { force: true });
  }
}

/**
 * Removes a lock whose owner died. Two waiters may judge the same stale lock
 * at once; the one that comes second must not delete the first one's fresh
 * lock, so the file is renamed aside and put back if it turns out to be live.
 */
async function takeOverStale(path: string, deadOwner: number): Promise<void> {
  const aside = `${path}.stale-${randomBytes(4).toString("hex")}`;
  try {
    await rename(path, aside);
  } catch {
    return; // someone else took it over first
  }
  const owner = Number((await readFile(aside, "utf8").catch(() => "")).trim());
  if (owner !== deadOwner && processAlive(owner)) await link(aside, path).catch(() => undefined);
  await rm(aside, { force: true });
}
