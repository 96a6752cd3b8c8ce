import { command, quote } from "./shell.js";

/**
 * Every command Tidemark runs on a host, built as text from data by pure
 * functions. Each word is quoted, so names from a config tree stay data.
 * Scripts go to a host's shell on stdin (session-scripts.ts): no argument
 * length limit, nothing in `ps`. Hosts need POSIX sh, coreutils,
 * util-linux (flock) and systemd for apps with units.
 */

/** Paths on hosts: a contract that units, checks and scripts rely on. */
export const HOST_ROOT = "/var/lib/tidemark";
export const appDir = (app: string) => `${HOST_ROOT}/apps/${app}`;
/** Where a host path's original is kept while a Tidemark link stands in its place: the same path below this dir. */
export const DISPLACED = `${HOST_ROOT}/displaced`;
const LOCK_CONFLICT = 75;

export interface RemoteCommand {
  /** The command line sshd runs. */
  line: string;
  /** What goes to its stdin: the script. */
  input: string;
}

export type RemoteUser = "root" | { sudo: string };

/** A script run as root: directly for root, through `sudo -n` (no password prompt) for another user. */
export function script(user: RemoteUser, lines: string[]): RemoteCommand {
  return { line: user === "root" ? "sh -s" : "sudo -n sh -s", input: [PRELUDE, ...lines, ""].join("\n") };
}

const HELPERS = [
  // A link appears in one rename(2) over the old one: there is never a moment without it.
  // Every process counts on a busy host: the dir is named by the shell, and made only when missing.
  `tm_link() { d=\${2%/*}; { [ -d "\${d:-/}" ] || mkdir -p -- "$d"; } && ln -sfn -- "$1" "$2.tidemark-new" && mv -T -- "$2.tidemark-new" "$2"; }`,
  `tm_switch() { old=$(readlink -- "$1/current" || true); if [ "$old" != "$2" ]; then if [ -n "$old" ]; then tm_link "$old" "$1/previous"; fi; tm_link "$2" "$1/current"; fi; }`,
  `tm_retire() { old=$(readlink -- "$1/current" || true); if [ -n "$old" ]; then tm_link "$old" "$1/previous"; rm -f -- "$1/current"; fi; }`,
  // Only links that point into Tidemark's releases are Tidemark's: anything else at a path it links is kept aside, never overwritten.
  `tm_ours() { [ -L "$1" ] && case "$(readlink -- "$1")" in ${HOST_ROOT}/apps/*) return 0;; esac; return 1; }`,
  `tm_there() { [ -e "$1" ] || [ -L "$1" ]; }`,
  // A file is hard-linked aside (a copy across file systems), so the link then replaces it in one rename; a directory has to move first.
  // Kept already and the same (a run cut after keeping it): carry on. Kept already and different: a person must choose, so stop.
  `tm_keep() { if tm_ours "$1" || ! tm_there "$1"; then return 0; fi; k=${DISPLACED}$1; if tm_there "$k"; then if [ "$1" -ef "$k" ] || { [ ! -d "$1" ] && cmp -s -- "$1" "$k"; }; then return 0; fi; echo "tidemark: $1 is in the way: $k already keeps what was there before Tidemark linked it; move one of them away, then deploy again" >&2; return 1; fi; mkdir -p -m 0700 ${DISPLACED}; mkdir -p -- "$(dirname -- "$k")"; if [ -d "$1" ] && [ ! -L "$1" ]; then mv -T -- "$1" "$k"; else ln -P -- "$1" "$k" 2>/dev/null || { rm -rf -- "$k.tidemark-new"; cp -a -- "$1" "$k.tidemark-new"; mv -T -- "$k.tidemark-new" "$k"; }; fi; }`,
  `tm_place() { tm_keep "$2"; tm_link "$1" "$2"; }`,
  `tm_restore() { mv -T -- "$2" "$1"; rmdir -p -- "$(dirname -- "$2")" 2>/dev/null || true; }`,
  // Removing a link puts back what it displaced: over the link in one rename for a file, after it for a directory; also after a run cut in between.
  `tm_unlink() { for p in "$@"; do k=${DISPLACED}$p; if tm_ours "$p"; then if tm_there "$k" && { [ -L "$k" ] || [ ! -d "$k" ]; }; then tm_restore "$p" "$k"; continue; fi; rm -f -- "$p"; fi; if tm_there "$k" && ! tm_there "$p"; then tm_restore "$p" "$k"; fi; done; }`,
];
/** What every script starts with: stop at the first error, and the helpers. */
export const PRELUDE = ["set -e", ...HELPERS].join("\n");

/**
 * The host lock: `flock -n` held by a process whose stdin is the SSH channel,
 * so the lock goes when the session goes, however the operator died. Prints
 * `locked` once held; exits 75 with the holder's note when someone else has it.
 */
export function lockCommand(user: RemoteUser, owner: string): string {
  const hold = `printf '%s\\n' "$1" > ${HOST_ROOT}/lock.owner && echo locked && exec cat > /dev/null`;
  const line = [
    `mkdir -p ${HOST_ROOT}`,
    `flock -n -o -E ${LOCK_CONFLICT} ${HOST_ROOT}/lock sh -c ${quote(hold)} sh ${quote(owner)}`,
    `rc=$?; if [ $rc -eq ${LOCK_CONFLICT} ]; then cat ${HOST_ROOT}/lock.owner 2>/dev/null; fi; exit $rc`,
  ].join("; ");
  return user === "root" ? line : `sudo -n sh -c ${quote(line)}`;
}
export const LOCK_CONFLICT_EXIT = LOCK_CONFLICT;

export interface InspectApp {
  app: string;
  release: string | null;
  base: string | null;
}

/** What the host has: its `current` line, then per app: current link, whether the release and the base release exist. */
export function inspectLines(apps: InspectApp[]): string[] {
  // Builtins where a program would do: each process costs a busy host milliseconds.
  const exists = (variable: string, app: string, release: string | null) =>
    release === null ? `${variable}=0` : `if [ -d ${quote(`${appDir(app)}/${release}`)} ]; then ${variable}=1; else ${variable}=0; fi`;
  return [
    `if IFS= read -r l < ${HOST_ROOT}/current; then printf '%s\\n' "$l"; else echo -; fi 2>/dev/null`,
    ...apps.flatMap(({ app, release, base }) => [
      exists("r", app, release),
      exists("b", app, base),
      `printf '%s %s %s\\n' "$(readlink -- ${quote(`${appDir(app)}/current`)} || echo -)" "$r" "$b"`,
    ]),
  ];
}

/**
 * Writes a host state file (`target` or `current`) in one rename. Two commands,
 * not an `&&` list: `set -e` ignores a failure on the left of `&&`, and a write
 * that fails (a full disk) must stop the script, not leave the old file as if written.
 */
export function stateLine(name: "target" | "current", deploymentId: string, tree: string | null): string {
  const file = `${HOST_ROOT}/${name}`;
  return `printf '%s\\n' ${quote(`${deploymentId} ${tree ?? "-"}`)} > ${file}.tidemark-new; mv -T -- ${file}.tidemark-new ${file}`;
}

/** Parses `stat -f -c '%a %S %b'` (available blocks, block size, total blocks) into bytes, or undefined if it is not that. */
export function parseDiskSpace(output: string): { availableBytes: number; totalBytes: number } | undefined {
  const [available, blockSize, total] = output.trim().split(" ").map(Number);
  if (
    available === undefined ||
    blockSize === undefined ||
    total === undefined ||
    ![available, blockSize, total].every(Number.isSafeInteger)
  )
    return undefined;
  return { availableBytes: available * blockSize, totalBytes: total * blockSize };
}

export interface StageApp {
  app: string;
  release: string;
  /** A release on the host to start from (unchanged files are hard links to it), or null for an empty dir. */
  base: string | null;
  /** The release dir is on the host already but changed since it went live: built again, it takes the old one's place. */
  replace?: boolean;
  /** Paths from the base that this release drops or replaces. */
  drop: string[];
  /** The files that travel, in the order their bytes follow the script. */
  files: StageFile[];
}

export interface StageFile {
  path: string;
  size: number;
  executable: boolean;
  /** Of the bytes; for a secret, of the stage's digest key and then the bytes (SECRET_KEY_CHARS). */
  sha256: string;
  /** A decrypted secret: written with no access for others from its first byte, then given this mode and group. */
  secret?: { mode: string; group?: string };
}

/**
 * A secret's digest is keyed, so no script, log or trace of one lets anyone
 * test guesses of a short secret: the key is random per upload, and comes
 * first in the payload, never in the script's text.
 */
export const SECRET_KEY_CHARS = 64;

export const partialDir = (app: string, release: string) => `${appDir(app)}/.partial-${release}`;
const tamperedDir = (app: string, release: string) => `${appDir(app)}/.tampered-${release}`;

/**
 * Writes `target`, then builds each release in a fresh partial dir: hard
 * links to the base for what did not change, the changed files' bytes read
 * from stdin (they follow the script in the same stream, in this order),
 * hashes checked; then read-only, and renamed into place.
 */
export function stageLines(deploymentId: string, tree: string | null, apps: StageApp[]): string[] {
  const keyed = apps.some(({ files }) => files.some((file) => file.secret));
  return [
    stateLine("target", deploymentId, tree),
    ...(keyed ? [`tm_k=$(head -c ${SECRET_KEY_CHARS})`] : []),
    ...apps.flatMap(({ app, release, base, replace, drop, files }) => {
      const partial = partialDir(app, release);
      const dirs = [...new Set(files.map((file) => file.path.slice(0, Math.max(0, file.path.lastIndexOf("/")))).filter(Boolean))].sort();
      const executables = files.filter((file) => file.executable).map((file) => `${partial}/${file.path}`);
      const plain = files.filter((file) => !file.secret);
      const secrets = files.filter((file) => file.secret);
      return [
        `if tm_there ${quote(partial)}; then ${command("rm", "-rf", "--", partial)}; fi`,
        command("mkdir", "-p", "--", partial),
        ...(base ? [command("cp", "-a", "--link", "--", `${appDir(app)}/${base}/.`, `${partial}/`)] : []),
        ...(drop.length > 0 ? [command("rm", "-rf", "--", ...drop.map((path) => `${partial}/${path}`))] : []),
        // The dirs a base brought already are there: mkdir runs only for a new one.
        ...(dirs.length > 0
          ? [
              `if ! { ${dirs.map((dir) => `[ -d ${quote(`${partial}/${dir}`)} ]`).join(" && ")}; }; then ${command("mkdir", "-p", "--", ...dirs.map((dir) => `${partial}/${dir}`))}; fi`,
            ]
          : []),
        // GNU head -c reads exactly that many bytes from a pipe: the next file's bytes stay for the next head.
        // A secret is never readable by others, not even while it is written: umask in a subshell, no process.
        ...files.map((file) => {
          const write = `head -c ${file.size} > ${quote(`${partial}/${file.path}`)}`;
          return file.secret ? `(umask 077; ${write})` : write;
        }),
        // File names hold no newline (validation refuses them), so a heredoc line is one file.
        ...(plain.length === 0
          ? []
          : [
              "sha256sum --check --quiet --strict <<'TIDEMARK_SUMS'",
              ...plain.map(({ path, sha256 }) => `${sha256}  ${partial}/${path}`),
              "TIDEMARK_SUMS",
            ]),
        ...secrets.map(({ path, sha256 }) => {
          const file = quote(`${partial}/${path}`);
          const arrived = `[ "$({ printf %s "$tm_k"; cat -- ${file}; } | sha256sum)" = ${quote(`${sha256}  -`)} ]`;
          return `${arrived} || { echo ${quote(`tidemark: ${app}/${path} did not arrive as sent (its keyed digest differs)`)} >&2; exit 1; }`;
        }),
        ...(executables.length > 0 ? [command("chmod", "a+x", "--", ...executables)] : []),
        command("chmod", "-R", "a-w", "--", partial),
        ...secrets.flatMap(({ path, secret, executable }) => {
          const file = `${partial}/${path}`;
          const mode = (parseInt(secret!.mode, 8) | (executable ? 0o100 : 0)).toString(8).padStart(4, "0");
          return [...(secret!.group ? [command("chgrp", "--", secret!.group, file)] : []), command("chmod", mode, "--", file)];
        }),
        // A release dir edited on the host goes aside in one rename, so that `current` (a heal's) lacks its target only between two renames.
        ...(replace
          ? [
              `if tm_there ${quote(tamperedDir(app, release))}; then ${command("rm", "-rf", "--", tamperedDir(app, release))}; fi`,
              command("mv", "-T", "--", `${appDir(app)}/${release}`, tamperedDir(app, release)),
            ]
          : []),
        command("mv", "-T", "--", partial, `${appDir(app)}/${release}`),
        ...(replace ? [command("rm", "-rf", "--", tamperedDir(app, release))] : []),
      ];
    }),
  ];
}

export interface SwitchSpec {
  /** Units to `disable --now`, before their unit files go. */
  stop: string[];
  apps: Array<{ app: string; release: string | null }>;
  /** App dirs to delete entirely (a first deployment rolled back). */
  purge: string[];
  links: { remove: string[]; add: Array<{ path: string; target: string }> };
  enable: string[];
  restart: string[];
  /** A unit file or drop-in came, went or changed: systemd must read them again (a reload costs 0.3-0.5 s). */
  reload: boolean;
}

/**
 * Stops what goes, switches `current` per app (a rename over the old link),
 * reconciles unit and manifest links: what a new link displaces is kept
 * under DISPLACED, and put back when the link goes.
 */
export function switchLines(spec: SwitchSpec): string[] {
  return [
    ...(spec.stop.length > 0 ? [`${command("systemctl", "disable", "--now", "--", ...spec.stop)} || true`] : []),
    ...spec.apps.map(({ app, release }) =>
      release === null ? command("tm_retire", appDir(app)) : command("tm_switch", appDir(app), release),
    ),
    ...(spec.links.remove.length > 0 ? [command("tm_unlink", ...spec.links.remove)] : []),
    ...spec.links.add.map(({ path, target }) => command("tm_place", target, path)),
    ...(spec.purge.length > 0 ? [command("rm", "-rf", "--", ...spec.purge.map(appDir))] : []),
  ];
}

/**
 * After the switch: systemd reads the unit files again if any changed, then
 * enables and restarts the units of changed apps. Empty when there is nothing
 * for systemd to do, so a host without systemd takes apps that have no units.
 */
export function restartLines(spec: SwitchSpec): string[] {
  return [
    ...(spec.reload ? ["systemctl daemon-reload"] : []),
    ...(spec.enable.length > 0 ? [command("systemctl", "enable", "--quiet", "--", ...spec.enable)] : []),
    // A unit that fails to restart is seen by the check that follows; the script carries on.
    ...(spec.restart.length > 0
      ? [
          `${command("systemctl", "reset-failed", "--", ...spec.restart)} 2>/dev/null || true`,
          `${command("systemctl", "restart", "--", ...spec.restart)} || true`,
        ]
      : []),
  ];
}

/** Records the host's `current`, then collects old releases: keeps `current`, `previous` and the newest `keep` others. Collection never fails. */
export function commitLines(deploymentId: string, tree: string | null, apps: string[], keep: number): string[] {
  return [
    stateLine("current", deploymentId, tree),
    // Counted by a glob first, no process: each link and its release stay, so most commits find nothing to collect.
    `tm_collect() { a=$1; set -- "$a"/*; k=${keep}; if [ -L "$a/current" ]; then k=$((k + 2)); fi; if [ -L "$a/previous" ]; then k=$((k + 2)); fi; [ $# -gt $k ] || return 0; c=$(readlink -- "$a/current" || true); p=$(readlink -- "$a/previous" || true); n=0; ls -1t -- "$a" | while IFS= read -r d; do case "$d" in current|previous|"\${c##*/}"|"\${p##*/}") continue;; esac; n=$((n + 1)); if [ "$n" -gt ${keep} ]; then rm -rf -- "$a/$d" "${HOST_ROOT}/snapshots/\${a##*/}/$d"; fi; done || true; }`,
    ...apps.map((app) => command("tm_collect", appDir(app))),
  ];
}

/** `commitLines` as a script of its own, for `sh -s`. */
export const commitScript = (user: RemoteUser, deploymentId: string, tree: string | null, apps: string[], keep: number): RemoteCommand =>
  script(user, commitLines(deploymentId, tree, apps, keep));

export interface UnitState {
  unit: string;
  activeState: string;
  subState: string;
  result: string;
}

/** Parses `systemctl show -p Id,ActiveState,SubState,Result` output: blocks separated by blank lines. */
export function parseUnitStates(output: string): UnitState[] {
  return output
    .trim()
    .split(/\n\s*\n/)
    .filter((block) => block.trim() !== "")
    .map((block) => {
      const fields = Object.fromEntries(
        block.split("\n").map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
      );
      return { unit: fields.Id ?? "", activeState: fields.ActiveState ?? "", subState: fields.SubState ?? "", result: fields.Result ?? "" };
    });
}

/** A unit is healthy once settled when it is active (or a oneshot that finished) and its last run succeeded. */
export function unitFailed(state: UnitState): boolean {
  return (
    state.activeState === "failed" ||
    state.result !== "success" ||
    !["active", "inactive", "activating", "reloading"].includes(state.activeState)
  );
}
