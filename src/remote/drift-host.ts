import { randomBytes } from "node:crypto";
import type { HostTree } from "../core/config.js";
import { readDriftCheck, type CheckMark, type DriftExpectation, type HostDrift } from "../core/drift.js";
import { describeError } from "../core/errors.js";
import { appLinks } from "../core/links.js";
import { appDir, HOST_ROOT, script, type RemoteUser } from "./commands.js";
import type { HostConnections } from "./connections.js";
import { command, quote } from "./shell.js";
import { DRIFT_FUNCTION } from "./snapshots.js";
import type { SshTarget } from "./ssh-session.js";

/** What a host should have, from the host tree the store records for it. */
export function driftExpectation(tree: HostTree): DriftExpectation {
  const apps = [...(tree.apps ?? [])].sort(([a], [b]) => (a < b ? -1 : 1));
  return {
    apps: apps.map(([app, appTree]) => ({ app, release: appTree.oid })),
    links: apps.flatMap(([app, appTree]) => [
      { path: `${appDir(app)}/current`, target: appTree.oid },
      ...appLinks(appTree).map(({ path, file }) => ({ path, target: `${appDir(app)}/current/${file}` })),
    ]),
    units: [...new Set(apps.flatMap(([, appTree]) => appTree.manifest?.systemd.units_enabled ?? []))].sort(),
  };
}

/**
 * The whole check of a host, as one script for one exec: whether a
 * deployment holds the host lock (then nothing else), each release dir
 * against its snapshot, every link in one `find`, every unit in one
 * `systemctl show`. Reads only; the last mark, `end`, says it ran to its end.
 */
export function driftLines(marker: string, expect: DriftExpectation, deep: boolean): string[] {
  const lock = `${HOST_ROOT}/lock`;
  return [
    "set +e",
    `TM=${quote(marker)}`,
    `tm_mark() { printf '%s %s\\n' "$TM" "$*"; }`,
    // Held locks are in /proc/locks by device and inode; looking never takes the lock, so a deployment starting now is never refused.
    `if [ -e ${lock} ]; then i=$(stat -c %i -- ${lock}); while read -r _ _ _ _ _ f _; do case "$f" in *:"$i") tm_mark busy; exit 0;; esac; done < /proc/locks; fi`,
    `T=$(mktemp -d) || exit 1; trap 'rm -rf -- "$T"' EXIT; deep=${deep ? "1" : ""}`,
    ...DRIFT_FUNCTION,
    ...expect.apps.map(({ app, release }) => command("tm_drift", app, release)),
    ...(expect.links.length > 0
      ? [`find ${expect.links.map(({ path }) => quote(path)).join(" ")} -maxdepth 0 -printf "$TM link %l\\t%p\\n" 2>/dev/null`]
      : []),
    ...(expect.units.length > 0
      ? [
          `${command("systemctl", "show", "-p", "Id,UnitFileState,ActiveState,Type,RemainAfterExit", "--", ...expect.units)} | sed "s/^/$TM unit /"`,
        ]
      : []),
    "tm_mark end",
  ];
}

export interface DriftCheckOptions {
  deep: boolean;
  ignore: readonly string[];
  timeoutMs?: number;
}

/** Checks one host over one connection, one exec; what went wrong on the way is the host's state, not an exception. */
export async function checkHostDrift(
  connections: HostConnections,
  target: SshTarget,
  expectation: DriftExpectation | Promise<DriftExpectation>,
  { deep, ignore, timeoutMs = 120_000 }: DriftCheckOptions,
): Promise<HostDrift> {
  const host = target.name;
  // The handshake runs while the expectation is read (from the store, for the CLI): neither waits for the other.
  const [leased, expected] = await Promise.allSettled([connections.lease(target), expectation]);
  if (expected.status === "rejected") {
    if (leased.status === "fulfilled") leased.value.release(true);
    throw expected.reason;
  }
  if (leased.status === "rejected") return { host, state: "unreachable", findings: [], detail: describeError(leased.reason) };
  const [lease, expect] = [leased.value, expected.value];
  let alive = true;
  try {
    const marker = randomBytes(8).toString("hex");
    const user: RemoteUser = target.user === "root" ? "root" : { sudo: target.user };
    const { line, input } = script(user, driftLines(marker, expect, deep));
    const result = await lease.session.exec(line, input, { timeoutMs });
    const marks = result.stdout.split("\n").flatMap((text): CheckMark[] => {
      if (!text.startsWith(`${marker} `)) return [];
      const rest = text.slice(marker.length + 1);
      const space = rest.indexOf(" ");
      return [space < 0 ? { kind: rest, text: "" } : { kind: rest.slice(0, space), text: rest.slice(space + 1) }];
    });
    const drift = readDriftCheck(host, expect, marks, ignore);
    if (drift) return drift;
    const why = result.stderr.trim().split("\n").at(-1) || `exit ${String(result.code ?? result.signal)}`;
    return { host, state: "failed", findings: [], detail: `the check stopped before its end: ${why}` };
  } catch (error) {
    alive = lease.session.alive;
    return { host, state: "failed", findings: [], detail: describeError(error) };
  } finally {
    lease.release(alive && lease.session.alive);
  }
}
