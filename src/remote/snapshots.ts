import { appDir, HOST_ROOT } from "./commands.js";
import { command, quote } from "./shell.js";

/**
 * A release's snapshot: what its dir held on the host when it went live, one
 * line per entry. `S type mode uid gid size inode ctime path` from stat, then
 * `H sha256  path` for each file others may read and `K digest  path` for
 * each they may not (a secret), the digest keyed with the host's snapshot
 * key, so that the snapshot lets no one test guesses of a short secret.
 * Kept in /var/lib/tidemark/snapshots/<app>/, readable by root only.
 */
export const snapshotFile = (app: string, release: string) => `${HOST_ROOT}/snapshots/${app}/${release}`;
export const SNAPSHOT_KEY = `${HOST_ROOT}/snapshot.key`;

/**
 * Stat cannot tell a file changed within its timestamps' granularity of the
 * snapshot from an unchanged one (git calls it racily clean): a snapshot
 * taken that soon after a change waits this long and stats again, so no
 * entry of it is racy. 2 s for file systems that keep whole seconds.
 */
const RACY_AWK = `function racy(c, now) { return c + (c ~ /\\.[0-9]*[1-9]/ ? 0.03 : 2) >= now }`;

const HELPERS = [
  `tm_stats() { find . -mindepth 1 -printf 'S %y %m %U %G %s %i %C@ %P\\n'; }`,
  // One sha256sum for all files; -z, so that no name is escaped.
  `tm_sums() { tr '\\n' '\\0' | xargs -0r sha256sum -z -- | tr '\\0' '\\n' | sed 's/^/H /'; }`,
  // Secrets are few: a keyed digest each, the key first and never in a command line.
  `tm_keyed() { k=$(cat ${SNAPSHOT_KEY}); while IFS= read -r p; do h=$({ printf %s "$k"; cat -- "$p"; } | sha256sum); printf 'K %s  %s\\n' "\${h%% *}" "$p"; done; }`,
];

/**
 * Takes the snapshots of releases that just went live: after the commit's
 * collection, whose unlinking changes the ctime of files a collected release
 * shared. Written whole, then renamed into place.
 */
export function snapshotLines(releases: Array<{ app: string; release: string }>): string[] {
  if (releases.length === 0) return [];
  const key = quote(SNAPSHOT_KEY);
  return [
    ...HELPERS,
    `if [ ! -s ${key} ]; then (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \\n' > ${key}.new); mv -f -- ${key}.new ${key}; fi`,
    [
      "tm_snap() {",
      `d=${HOST_ROOT}/snapshots/"$3"; [ -d "$d" ] || mkdir -p -m 0700 -- "$d"; s="$d/$2"`,
      `(cd -- "$1/$2" || exit 1`,
      `(umask 077; tm_stats > "$s.new")`,
      `w=$(awk -v now="$(date +%s.%N)" '${RACY_AWK} $1 == "S" && racy($8, now) { x = $8 ~ /\\.[0-9]*[1-9]/ ? 0.03 : 2; if (x > w) w = x } END { if (w) print w }' "$s.new")`,
      `if [ -n "$w" ]; then sleep "$w"; tm_stats > "$s.new"; fi`,
      `find . -type f -perm -0004 -printf '%P\\n' | tm_sums >> "$s.new"`,
      `find . -type f ! -perm -0004 -printf '%P\\n' | tm_keyed >> "$s.new"`,
      `) && mv -f -- "$s.new" "$s"; }`,
    ].join("\n"),
    // A release without a snapshot is still deployed: its drift check says it cannot compare it, and the next release has one.
    ...releases.map(
      ({ app, release }) =>
        `${command("tm_snap", appDir(app), release, app)} || ${command("rm", "-f", "--", `${snapshotFile(app, release)}.new`)}`,
    ),
  ];
}

/**
 * Compares the release dir's stat (stdin) with its snapshot (the first
 * file): a `drift <kind> <app>/<path>` mark for each entry added, removed,
 * of another type or size, mode or owner; the entries whose inode or ctime
 * changed, or that are racy, go to the file `h` to have their content
 * compared (`deep` sends every file).
 */
const COMPARE = `${RACY_AWK}
function rest(n,   s, i) { s = $0; for (i = 0; i < n; i++) sub(/^[^ ]* /, "", s); return s }
function say(kind, p) { print tm, "drift", kind, app "/" p }
FNR == NR { if ($1 == "S") want[rest(8)] = $2 " " $3 " " $4 " " $5 " " $6 " " $7 " " $8; else keyed[substr($0, 69)] = $1 == "K"; next }
$1 == "S" {
  p = rest(8); seen[p] = 1
  if (!(p in want)) { if ($2 != "d") say("added", p); next }
  split(want[p], w, " ")
  if ($2 != w[1]) { say("modified", p); next }
  if ($3 != w[2]) say("mode", p)
  if ($4 != w[3] || $5 != w[4]) say("owner", p)
  if ($2 == "d") next
  if ($6 != w[5]) { say("modified", p); next }
  if (deep || $7 != w[6] || $8 != w[7] || racy(w[7], t)) { if ($2 != "f") say("modified", p); else { k = keyed[p] ? "K" : "H"; print k, p > h } }
}
END { for (p in want) if (!(p in seen) && substr(want[p], 1, 1) != "d") say("removed", p) }`;

/** The content compared: a `drift modified` mark for each file whose digest is not the snapshot's. */
const SAME = `FNR == NR { if ($1 == "H" || $1 == "K") sum[substr($0, 69)] = $2; next }
{ p = substr($0, 69); if (sum[p] != $2) print tm, "drift", "modified", app "/" p }`;

/**
 * `tm_drift <app> <release> [label]`: the release dir against its snapshot,
 * one find and one awk when nothing changed; `gone` and `unknown` marks when
 * the dir or its snapshot is missing. Marks name the app, or the label.
 * Needs `$T`, a scratch dir, and `$deep`.
 */
export const DRIFT_FUNCTION = [
  ...HELPERS,
  [
    "tm_drift() {",
    `a=${quote(`${HOST_ROOT}/apps`)}/$1; s=${quote(`${HOST_ROOT}/snapshots`)}/"$1/$2"; l=\${3:-$1}`,
    `if [ ! -d "$a/$2" ]; then tm_mark gone "$l"; return 0; fi`,
    `if [ ! -f "$s" ]; then tm_mark unknown "$l"; return 0; fi`,
    `rm -f -- "$T/hash"; t=$(find "$s" -printf '%T@')`,
    `(cd -- "$a/$2" && tm_stats) | awk -v tm="$TM" -v app="$l" -v t="$t" -v deep="$deep" -v h="$T/hash" ${quote(COMPARE)} "$s" -`,
    `if [ -s "$T/hash" ]; then (cd -- "$a/$2" && { sed -n 's/^H //p' "$T/hash" | tm_sums; sed -n 's/^K //p' "$T/hash" | tm_keyed; }) | awk -v tm="$TM" -v app="$l" ${quote(SAME)} "$s" -; fi`,
    "}",
  ].join("\n"),
];

/**
 * Before a deployment builds on a release dir already on the host (a return
 * to it, or the base its new release hard-links), the dir is checked against
 * its snapshot: the one it reuses when it is there, else the base. Marks are
 * labelled `<app>@release` or `<app>@base`; anything found, or no snapshot,
 * and the deployment builds from git instead (apply-host.ts).
 */
export function verifyLines(apps: Array<{ app: string; release: string | null; base: string | null }>): string[] {
  const checked = apps.filter(({ release, base }) => release !== null || base !== null);
  if (checked.length === 0) return [];
  return [
    `T=${HOST_ROOT}/.scratch; [ -d "$T" ] || mkdir -m 0700 -- "$T"; deep=`,
    ...DRIFT_FUNCTION,
    ...checked.map(({ app, release, base }) => {
      const dir = (name: string) => quote(`${appDir(app)}/${name}`);
      const checks = [
        ...(release !== null ? [[`[ -d ${dir(release)} ]`, command("tm_drift", app, release, `${app}@release`)]] : []),
        ...(base !== null ? [[`[ -d ${dir(base)} ]`, command("tm_drift", app, base, `${app}@base`)]] : []),
      ];
      // A check that cannot run finds nothing to trust: its marks say so, and the script goes on.
      return `${checks.map(([test, run], i) => `${i === 0 ? "if" : "elif"} ${test}; then ${run} || tm_mark unknown ${quote(`${app}@${i === 0 && release !== null ? "release" : "base"}`)}`).join("; ")}; fi`;
    }),
  ];
}
