import { existsSync, readdirSync, readFileSync } from "node:fs";
import { cgroupDirs, cgroupPids } from "./cgroups.js";
import { BEDS } from "./bed.js";
import { listNamespaces } from "./network.js";
import { run, waitFor } from "./proc.js";

/**
 * What a bed (or, without an id, any bed) left on the machine: processes,
 * cgroups, network namespaces, links, mounts, nspawn propagation dirs, state.
 * Exited processes linger as zombies until PID 1 reaps them; those count as gone.
 */
export async function findLeftovers(id?: string): Promise<string[]> {
  const cgroup = id ? `tidemark-testbed/${id}` : "tidemark-testbed";
  const prefix = id ? `tmk-${id}-` : "tmk-";
  const found: string[] = [];
  const pids = cgroupPids(cgroup);
  if (pids.length > 0) found.push(`processes ${pids.join(", ")} in cgroup ${cgroup}`);
  for (const dir of cgroupDirs(cgroup)) {
    const children = existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isDirectory()) : [];
    if (id ? existsSync(dir) : children.length > 0) found.push(`cgroup ${dir}${id ? "" : ` (${children.map((c) => c.name).join(", ")})`}`);
  }
  for (const netns of await listNamespaces(prefix)) found.push(`network namespace ${netns}`);
  const links = (await run("ip", ["-o", "link", "show"])).stdout
    .split("\n")
    .filter((line) => new RegExp(`: tmk${id ?? "[0-9a-f]{6}"}[@:]`).test(line));
  for (const link of links) found.push(`link ${link.split(":")[1]?.trim()}`);
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    if (line.includes(id ? `/tidemark-testbed/beds/${id}` : "/tidemark-testbed/beds/") || line.includes(`/run/netns/${prefix}`))
      found.push(`mount ${line.split(" ")[4]}`);
  }
  const propagate = "/run/systemd/nspawn/propagate";
  for (const name of existsSync(propagate) ? readdirSync(propagate) : [])
    if (name.startsWith(prefix)) found.push(`nspawn propagation dir ${name}`);
  if (id && existsSync(`${BEDS}/${id}`)) found.push(`bed directory ${BEDS}/${id}`);
  return found;
}

/** Waits out the slow reaping and asynchronous link removal, then reports what is really left. */
export async function settledLeftovers(id?: string, timeoutMs = 10_000): Promise<string[]> {
  try {
    await waitFor("the bed's leftovers to disappear", async () => (await findLeftovers(id)).length === 0, { timeoutMs, intervalMs: 100 });
    return [];
  } catch {
    return findLeftovers(id);
  }
}
