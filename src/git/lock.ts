import { open, readFile, rm } from "node:fs/promises";

/**
 * A lock file in the style of git's: created exclusively, holding the owner's
 * pid, so a lock left by a process that died is recognised and taken over.
 */
export async function withLockFile<T>(path: string, work: () => Promise<T>, { timeoutMs = 60_000 } = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
    try {
      const handle = await open(path, "wx");
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number((await readFile(path, "utf8").catch(() => "")).trim());
      if (owner > 0 && !alive(owner)) await rm(path, { force: true });
      else if (Date.now() > deadline) throw new Error(`${path} is held by process ${owner || "unknown"}; remove it if that process is gone`, { cause: error });
      else await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
  try {
    return await work();
  } finally {
    await rm(path, { force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
