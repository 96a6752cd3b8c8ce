import type { AppTree } from "./config.js";

/** Where an app's unit files and drop-ins are linked on a host: a contract, like the release paths. */
export const UNIT_DIR = "/etc/systemd/system";
export const SYSTEMD_PREFIX = "systemd/";

/** A host path an app links to one of its files. */
export interface AppLink {
  path: string;
  /** The file inside the app's release. */
  file: string;
}

/** The links an app places on its host: unit files and drop-ins, and its manifest's symlinks, sorted by path. */
export function appLinks(tree: AppTree): AppLink[] {
  const units = [...(tree.files?.keys() ?? [])]
    .filter((file) => file.startsWith(SYSTEMD_PREFIX))
    .map((file) => ({ path: `${UNIT_DIR}/${file.slice(SYSTEMD_PREFIX.length)}`, file }));
  const symlinks = Object.entries(tree.manifest?.symlinks ?? {}).map(([path, file]) => ({ path, file }));
  return [...units, ...symlinks].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
