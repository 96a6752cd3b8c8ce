import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { isAlive, sleep } from "./proc.js";

/**
 * Every process the bed starts lives in a cgroup of its own, created at the
 * same path in each hierarchy that systemd-nspawn looks at. This is what lets
 * containers on a host whose PID 1 is not systemd keep apart (docs/testbed.md),
 * and it lets teardown find every process a part left behind.
 */
const ROOT = "/sys/fs/cgroup";
export const BED_CGROUP = "tidemark-testbed";

export function hierarchies(): string[] {
  if (existsSync(join(ROOT, "cgroup.controllers"))) return [ROOT];
  return ["systemd", "unified", "memory"].map((name) => join(ROOT, name)).filter((dir) => existsSync(dir));
}

export function cgroupDirs(path: string): string[] {
  return hierarchies().map((hierarchy) => join(hierarchy, path));
}

export function createCgroup(path: string): string[] {
  const dirs = cgroupDirs(path);
  for (const dir of dirs) mkdirSync(dir, { recursive: true });
  return dirs;
}

/** Every pid in the cgroup or below it, across hierarchies. */
export function cgroupPids(path: string): number[] {
  const pids = new Set<number>();
  const walk = (dir: string) => {
    if (!existsSync(dir)) return;
    for (const line of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n")) {
      if (line.trim() !== "") pids.add(Number(line));
    }
    for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) walk(join(dir, entry.name));
  };
  for (const dir of cgroupDirs(path)) walk(dir);
  return [...pids].filter(isAlive);
}

export function isInCgroup(pid: number, path: string): boolean {
  try {
    const lines = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n");
    const expected = hierarchies().length;
    return lines.filter((line) => line.endsWith(`/${path}`) || line.includes(`/${path}/`)).length >= expected;
  } catch {
    return false;
  }
}

/** Kills whatever is still in the cgroup, then removes it depth first. */
export async function destroyCgroup(path: string, { timeoutMs = 10_000 } = {}): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let pids = cgroupPids(path); pids.length > 0; pids = cgroupPids(path)) {
    if (Date.now() > deadline) throw new Error(`processes ${pids.join(", ")} in cgroup ${path} survived SIGKILL`);
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await sleep(50);
  }
  for (const dir of cgroupDirs(path)) removeTree(dir);
  // The shared parent goes too once the last bed has left it; another bed may still be using it.
  for (const dir of cgroupDirs(BED_CGROUP)) {
    try {
      rmdirSync(dir);
    } catch {
      // not empty, or already gone
    }
  }
}

function removeTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) removeTree(join(dir, entry.name));
  // A cgroup whose last process has just exited can refuse removal (EBUSY) for a moment.
  for (let attempt = 0; ; attempt++) {
    try {
      rmdirSync(dir);
      return;
    } catch (error) {
      if (attempt >= 100 || (error as NodeJS.ErrnoException).code !== "EBUSY") throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
}
