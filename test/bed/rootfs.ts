import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { run } from "./proc.js";

/**
 * The root file system the systemd hosts boot from: built once by debootstrap
 * (~50 s, ~220 MB) and cached outside the repository, keyed by its recipe, so
 * that a changed recipe builds afresh and an unchanged one is reused.
 */
export const ROOTFS_CACHE = "/var/cache/tidemark-testbed";
const SOURCES = "/etc/apt/sources.list.d/debian.sources";
const RECIPE = fileURLToPath(new URL("./rootfs.sh", import.meta.url));

/** The Debian mirror apt already uses here; TIDEMARK_TESTBED_MIRROR for machines that have none (e.g. Ubuntu CI runners). */
export function debianMirror(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TIDEMARK_TESTBED_MIRROR) return env.TIDEMARK_TESTBED_MIRROR;
  if (!existsSync(SOURCES))
    throw new Error(`no ${SOURCES}: set TIDEMARK_TESTBED_MIRROR to a Debian mirror to build the systemd hosts' root fs`);
  const sources = readFileSync(SOURCES, "utf8");
  for (const stanza of sources.split(/\n\s*\n/)) {
    const uri = /^URIs:\s*(\S+)/m.exec(stanza)?.[1];
    const suites = /^Suites:\s*(.+)$/m.exec(stanza)?.[1]?.split(/\s+/) ?? [];
    if (uri && suites.includes("bookworm")) return uri;
  }
  throw new Error(
    "no bookworm mirror in /etc/apt/sources.list.d/debian.sources: the test bed builds its root fs from the mirror apt already uses",
  );
}

export function rootfsPath(mirror = debianMirror()): string {
  const key = createHash("sha256").update(readFileSync(RECIPE)).update(mirror).digest("hex").slice(0, 12);
  return `${ROOTFS_CACHE}/rootfs-${key}`;
}

/** Builds the root fs unless the cache has it; concurrent callers wait on one build. */
export async function ensureRootfs(): Promise<string> {
  const mirror = debianMirror();
  const dest = rootfsPath(mirror);
  mkdirSync(ROOTFS_CACHE, { recursive: true });
  await run("flock", [`${ROOTFS_CACHE}/.lock`, "sh", RECIPE, dest, mirror]);
  return dest;
}
