import {
  appDir,
  commitLines,
  HOST_ROOT,
  inspectLines,
  LOCK_CONFLICT_EXIT,
  PRELUDE,
  restartLines,
  stageLines,
  switchLines,
  type InspectApp,
  type RemoteUser,
  type StageApp,
  type SwitchSpec,
} from "./commands.js";
import { command, quote } from "./shell.js";
import { snapshotLines, verifyLines } from "./snapshots.js";

/**
 * One deployment talks to a host through one `sh` (the host's shell): it
 * reads scripts from its stdin, each preceded by a line with its length and
 * the length of the bytes that follow it (files to write), runs each in a
 * subshell and ends its output, on stdout and on stderr, with a line
 * `<marker> end <exit code>`. The shell holds the host lock on fd 9 from the
 * first script on, so the lock dies with the connection however the
 * operator died. A script cut short by a lost connection never runs: it is
 * one function definition, which does not parse until its last line came.
 */
const LOOP = [
  "TM=$1; export TM",
  `{ [ -d ${HOST_ROOT} ] || mkdir -p ${HOST_ROOT}; } && exec 9>>${HOST_ROOT}/lock || exit 70`,
  "while IFS=' ' read -r n p; do",
  '  s=$(head -c "$n")',
  // Every process counts on a busy host: a script without bytes runs on no pipe.
  `  if [ "$p" -eq 0 ]; then (eval "$s"; tm_script) < /dev/null; rc=$?`,
  // What a script leaves unread of its bytes (it failed half-way) is drained, so the next length line is read where it starts.
  `  else head -c "$p" | { (eval "$s"; tm_script); rc=$?; cat > /dev/null; exit $rc; }; rc=$?; fi`,
  `  printf '\\n%s end %s\\n' "$TM" "$rc"; printf '\\n%s end %s\\n' "$TM" "$rc" >&2`,
  "done",
].join("\n");

/** The command line that starts the host's shell: as root directly, through `sudo -n` for another user. */
export function shellCommand(user: RemoteUser, marker: string): string {
  const line = `/bin/sh -c ${quote(LOOP)} tidemark ${quote(marker)}`;
  return user === "root" ? line : `sudo -n ${line}`;
}

/** A script for the host's shell: the prelude and the lines, as one function that runs only once it is whole. */
export function sessionScript(lines: string[]): string {
  return ["tm_script() {", PRELUDE, ...MARKS, ...lines, "}", ""].join("\n");
}

/** Structured lines start with the session's marker, which no file or output can guess. */
const MARKS = [
  `tm_mark() { printf '%s %s\\n' "$TM" "$*"; }`,
  // A log line per line of a file, so that output without a final newline cannot run into the next mark.
  `tm_log() { sed "s/^/$TM $1 /" "$2"; printf '\\n'; }`,
];

/** Where the undo of an activation waits for its confirmation, and the note a host leaves when it used it. */
export const UNDO_DIR = `${HOST_ROOT}/undo`;
export const ROLLED_BACK_NOTE = `${HOST_ROOT}/rolled-back`;
const undoFile = (token: string) => `${UNDO_DIR}/${token}.sh`;

/**
 * Disarms an activation's undo: the file goes first, so a timer that fires
 * now finds nothing to do; then the timer (systemd) or the sleeper (no systemd).
 */
const DISARM = `tm_disarm() { rm -f -- ${UNDO_DIR}/"$1".sh; if [ -f ${UNDO_DIR}/"$1".pid ]; then read -r pid < ${UNDO_DIR}/"$1".pid || true; kill "$pid" 2>/dev/null || true; rm -f -- ${UNDO_DIR}/"$1".pid; else systemctl stop "tidemark-undo-$1.timer" 2>/dev/null || true; fi; }`;

/**
 * Takes the host lock (exit 75 with the holder's note when someone has it),
 * runs the undo an activation left unconfirmed (its operator is gone, or it
 * would hold the lock), passes on the notes of undos that ran, and inspects.
 */
export function lockScript(owner: string, apps: InspectApp[]): string {
  return sessionScript([
    `if ! flock -n 9; then cat ${HOST_ROOT}/lock.owner 2>/dev/null || true; exit ${LOCK_CONFLICT_EXIT}; fi`,
    `printf '%s\\n' ${quote(owner)} > ${HOST_ROOT}/lock.owner`,
    `for f in ${UNDO_DIR}/*.sh; do if [ -f "$f" ]; then sh "$f" lost > /dev/null; fi; done`,
    `if [ -f ${ROLLED_BACK_NOTE} ]; then tm_log undone ${ROLLED_BACK_NOTE}; rm -f -- ${ROLLED_BACK_NOTE}; fi`,
    "tm_mark phase inspect",
    ...inspectLines(apps),
    ...verifyLines(apps),
  ]);
}

/** The same inspection, for a plan made again once the lock is held. */
export const inspectScript = (apps: InspectApp[]): string => sessionScript([...inspectLines(apps), ...verifyLines(apps)]);

export interface CommandCheck {
  app: string;
  command: string;
  timeoutSeconds: number;
}

/** What the host checks after a switch: units (after settling) and the apps' command checks, in order. */
export interface HostChecks {
  units: string[];
  commands: CommandCheck[];
  /** Settle time, in ms, before anything is checked; 0 when there is nothing to check. */
  settleMs: number;
}

/**
 * A hook as the host runs it: the release dir it runs from, the file (a
 * path in it, never a shell string), its time limit and user, and the only
 * environment it gets (`env -i`: nothing else of the operator's or of the
 * SSH session's reaches it).
 */
export interface HookRun {
  phase: string;
  dir: string;
  run: string;
  timeoutSeconds: number;
  user?: string;
  /** Its failure is reported, not acted on (`onFailure: warn`). */
  warn: boolean;
  env: Record<string, string>;
}

/** The PATH a hook runs with: a login's, with the admin directories. */
export const HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** An activation's way back: the reverse switch, kept on the host while the activation is unconfirmed. */
export interface Undo {
  /** Names the undo's file and timer: random per activation, so a timer never fires another activation's undo. */
  token: string;
  reverse: SwitchSpec;
  /** What the host checks after it switched back. */
  checks: HostChecks;
  /** The host switches back by itself this long after the switch unless the operator confirms. */
  confirmSeconds: number;
  /** Left in ROLLED_BACK_NOTE when the host switched back by itself, for the next deployment to report. */
  note: string;
  /** The outgoing releases' rollback hooks: before the switch back, and after it and its checks. */
  hooks: { before: HookRun[]; after: HookRun[] };
}

export interface Activation {
  deploymentId: string;
  tree: string | null;
  stage: StageApp[];
  forward: SwitchSpec;
  checks: HostChecks;
  /** Null when there is no way back (a previous release gone from the host). */
  undo: Undo | null;
  /** Switch back when the checks fail (`onFailure` other than `halt`). */
  rollBack: boolean;
  /** Hooks before the switch (nothing switches if one fails) and after the checks passed. */
  hooks: { before: HookRun[]; after: HookRun[] };
}

/**
 * The script that moves a host: stage and upload, then arm the undo, switch,
 * restart, settle and check; on failure, switch back, restart and check
 * again in the same run. It prints `phase` marks as it goes, `fail`, `unit`,
 * `journal` and `check` marks for what it found, and last `result ok` (the
 * lock still held, for the commit) or `result failed` (the lock released).
 */
export function activateScript(activation: Activation): string {
  const { undo } = activation;
  const restart = restartLines(activation.forward);
  const steps = [
    ...stepFunction("tm_stage", stageLines(activation.deploymentId, activation.tree, activation.stage)),
    ...stepFunction("tm_switch_forward", switchLines(activation.forward)),
    ...(restart.length > 0 ? stepFunction("tm_restart_forward", restart) : []),
    ...(undo ? stepFunction("tm_arm_undo", armLines(undo)) : []),
  ];
  const back = undo && activation.rollBack;
  return sessionScript([
    ...HELPERS,
    ...steps,
    `tm_forward() {`,
    "tm_mark phase switch",
    "tm_step switch tm_switch_forward; [ $? -eq 0 ] || return 1",
    "tm_mark phase restart",
    // A step is a subshell: none when systemd has nothing to do.
    ...(restart.length > 0 ? ["tm_step reload tm_restart_forward; [ $? -eq 0 ] || return 1"] : []),
    "tm_mark phase check",
    ...checkLines(activation.checks),
    "}",
    ...hookFunction("tm_hooks_before", activation.hooks.before),
    ...hookFunction("tm_hooks_after", activation.hooks.after),
    "set +e",
    "tm_mark phase upload",
    "tm_step upload tm_stage",
    // Nothing switched: the lock goes, and the free space tells a full disk from other failures.
    `if [ $? -ne 0 ]; then tm_mark space "$(stat -f -c '%a %S %b' -- ${HOST_ROOT})"; flock -u 9; exit 1; fi`,
    // A hook before the switch that fails leaves the host as it was: nothing switched, and the lock goes.
    ...(activation.hooks.before.length > 0 ? ["tm_hooks_before; if [ $? -ne 0 ]; then flock -u 9; exit 1; fi"] : []),
    ...(undo ? ["tm_step arm tm_arm_undo", "if [ $? -ne 0 ]; then flock -u 9; exit 1; fi"] : []),
    "tm_forward",
    // The hooks after the checks run under the lock too: a deployment waiting for the host waits for them.
    activation.hooks.after.length > 0
      ? "if [ $? -eq 0 ]; then tm_hooks_after; if [ $? -eq 0 ]; then tm_mark result ok; exit 0; fi; fi"
      : "if [ $? -eq 0 ]; then tm_mark result ok; exit 0; fi",
    ...(back ? backLines(undo) : undo ? [command("tm_disarm", undo.token)] : []),
    "flock -u 9",
    "tm_mark result failed",
  ]);
}

/** Switches back after a failure the operator found (an HTTP check), checks again, and releases the lock. */
export function rollbackScript(undo: Undo): string {
  return sessionScript([...HELPERS, "set +e", ...backLines(undo), "flock -u 9", "tm_mark result failed"]);
}

/**
 * Records `current`, collects old releases, disarms the undo: the activation
 * is confirmed. Then snapshots the releases that went live, still under the
 * lock, and releases it.
 */
export function confirmScript(
  deploymentId: string,
  tree: string | null,
  apps: string[],
  keep: number,
  token: string | null,
  live: Array<{ app: string; release: string }> = [],
): string {
  return sessionScript([
    DISARM,
    ...commitLines(deploymentId, tree, apps, keep),
    ...(token ? [command("tm_disarm", token)] : []),
    ...snapshotLines(live),
    "flock -u 9",
  ]);
}

/** Disarms the undo and releases the lock, leaving the host as it is (`onFailure: halt`). */
export const releaseScript = (token: string | null): string =>
  sessionScript([DISARM, ...(token ? [command("tm_disarm", token)] : []), "flock -u 9"]);

const HELPERS = [
  DISARM,
  // Scratch files for what steps print: one dir, safe to share because only the lock holder writes it.
  `T=${HOST_ROOT}/.scratch; [ -d "$T" ] || mkdir -m 0700 -- "$T"`,
  // A step runs in a subshell of its own with `set -e`, its exit code taken as a plain statement: `set -e` is ignored
  // in anything run from an `if` or an `||`, however deep. A failure prints `fail <step> <code>` and the step's stderr.
  `tm_step() { s=$1; shift; ( set -e; "$@" ) 2> "$T/err"; rc=$?; if [ $rc -ne 0 ]; then tm_mark fail "$s" $rc; tm_log log "$T/err"; fi; return $rc; }`,
  // Units: their state as `unit` marks; for each one failed (as unitFailed says), its journal. Returns 1 when one failed.
  `tm_units() { systemctl show -p Id,ActiveState,SubState,Result -- "$@" > "$T/units" 2> "$T/err" || { tm_mark fail units $?; tm_log log "$T/err"; return 1; }; tm_log unit "$T/units"; bad=$(awk 'BEGIN { RS = ""; FS = "\\n" } { id = ""; a = ""; r = ""; for (i = 1; i <= NF; i++) { k = substr($i, 1, index($i, "=") - 1); v = substr($i, index($i, "=") + 1); if (k == "Id") id = v; else if (k == "ActiveState") a = v; else if (k == "Result") r = v } if (a == "failed" || r != "success" || (a != "active" && a != "inactive" && a != "activating" && a != "reloading")) print id }' "$T/units"); [ -z "$bad" ] && return 0; for u in $bad; do tm_mark journal-of "$u"; journalctl --no-pager -o cat -n 20 -u "$u" < /dev/null > "$T/journal" 2>&1 || true; tm_log journal "$T/journal"; done; return 1; }`,
  // A hook: from its release dir, with only its own environment, as its user, within its time (the whole process group is killed).
  `tm_hook() { hp=$1; hi=$2; hd=$3; ht=$4; hu=$5; hr=$6; shift 6; hs=$(date +%s%N); ( cd -- "$hd" && if [ -n "$hu" ]; then exec env -i "$@" timeout -k 5 "$ht" runuser -u "$hu" -- "$hr"; else exec env -i "$@" timeout -k 5 "$ht" "$hr"; fi ) < /dev/null > "$T/out" 2>&1 9>&-; rc=$?; tm_mark hook "$hp" "$hi" $rc $(( ($(date +%s%N) - hs) / 1000000 )); tm_log log "$T/out"; return $rc; }`,
  // A command check runs from its app's `current` with a time limit, its output kept for the report; it never holds the lock.
  `tm_command() { ( cd -- "$2" && exec timeout -k 5 "$3" sh -c "$4" ) < /dev/null > "$T/out" 2>&1 9>&-; rc=$?; if [ $rc -ne 0 ]; then tm_mark check "$1" $rc; tm_log log "$T/out"; return 1; fi; }`,
];

/** A step as a function; sh has no empty function body. */
const stepFunction = (name: string, lines: string[]): string[] => [`${name}() {`, ...(lines.length > 0 ? lines : [":"]), "}"];

function checkLines({ units, commands, settleMs }: HostChecks): string[] {
  const settle = settleMs > 0 ? [`sleep ${(settleMs / 1000).toFixed(3)}`] : [];
  return [
    ...settle,
    ...(units.length > 0 ? [`${command("tm_units", ...units)}; [ $? -eq 0 ] || return 1`] : []),
    ...commands.map(
      (check, i) =>
        `${command("tm_command", String(i), `${appDir(check.app)}/current`, String(check.timeoutSeconds), check.command)}; [ $? -eq 0 ] || return 1`,
    ),
    "return 0",
  ];
}

/** The switch back, run from the undo's own file (which disarms itself), then the checks of what the host runs again. */
function backLines(undo: Undo): string[] {
  const { before, after } = undo.hooks;
  return [
    ...hookFunction("tm_down_before", before),
    ...hookFunction("tm_down_after", after),
    "tm_mark phase rollback",
    // The outgoing release's down runs first; the files go back even if it fails, which the rollback's report says.
    ...(before.length > 0 ? ["tm_down_before; d=$?"] : []),
    `tm_step rollback sh ${quote(undoFile(undo.token))} now`,
    "if [ $? -eq 0 ]; then",
    "tm_back() {",
    "tm_mark phase check",
    ...checkLines(undo.checks),
    "}",
    "tm_back",
    before.length > 0 || after.length > 0
      ? `if [ $? -eq 0 ]; then ${after.length > 0 ? "tm_down_after" : "true"}; if [ $? -eq 0 ] && [ \${d:-0} -eq 0 ]; then tm_mark rollback ok; else tm_mark rollback failed; fi; else tm_mark rollback failed; fi`
      : "if [ $? -eq 0 ]; then tm_mark rollback ok; else tm_mark rollback failed; fi",
    "else tm_mark rollback failed; fi",
  ];
}

/**
 * Runs hooks in order, each from its release dir under `timeout` (which
 * kills the hook's whole process group, then KILLs it 5 s later), with
 * `env -i` and the hook's own variables only, never holding the lock's fd.
 * Each leaves a `hook <phase> <index> <exit> <ms>` mark and its output; the
 * first that fails, unless it only warns, ends the list with 1.
 */
function hookFunction(name: string, hooks: HookRun[]): string[] {
  if (hooks.length === 0) return [];
  return [
    `${name}() {`,
    ...hooks.map((hook, i) => {
      const env = Object.entries({ PATH: HOOK_PATH, LANG: "C.UTF-8", HOME: "/root", ...hook.env }).map(([key, value]) => `${key}=${value}`);
      const run = `./${hook.run}`;
      const line = command("tm_hook", hook.phase, String(i), hook.dir, String(hook.timeoutSeconds), hook.user ?? "", run, ...env);
      return hook.warn ? line : `${line}; [ $? -eq 0 ] || return 1`;
    }),
    "return 0",
    "}",
  ];
}

/**
 * Writes the undo's file and arms its timer: a transient systemd timer
 * (outside the SSH session, so it outlives it), or on a host without
 * systemd a sleeper of its own session. Either takes the host lock before it
 * switches back, so it never runs while a deployment holds the host.
 */
function armLines(undo: Undo): string[] {
  const file = undoFile(undo.token);
  const fire = `[ ! -f "$1" ] || exec sh "$1" timer`;
  return [
    `[ -d ${UNDO_DIR} ] || ${command("mkdir", "-p", "-m", "0700", "--", UNDO_DIR)}`,
    `printf '%s\\n' ${quote(undoFileText(undo))} > ${quote(`${file}.new`)}`,
    command("mv", "-f", "--", `${file}.new`, file),
    "if [ -d /run/systemd/system ]; then",
    command(
      "systemd-run",
      "--quiet",
      "--collect",
      `--unit=tidemark-undo-${undo.token}`,
      `--on-active=${undo.confirmSeconds}`,
      "--timer-property=AccuracySec=100ms",
      "--",
      "flock",
      `${HOST_ROOT}/lock`,
      "sh",
      "-c",
      fire,
      "sh",
      file,
    ),
    "else",
    // The sleeper and its sleep ignore SIGHUP, to outlive the session; a disarm's SIGTERM ends the sleep, then the sleeper.
    `sh -c ${quote(`trap '' HUP; trap 'kill "$s"; exit 0' TERM; sleep "$1" & s=$!; wait "$s" && exec flock ${HOST_ROOT}/lock sh -c '${fire}' sh "$2"`)} sh ${undo.confirmSeconds} ${quote(file)} < /dev/null > /dev/null 2>&1 9>&- &`,
    `echo $! > ${quote(`${UNDO_DIR}/${undo.token}.pid`)}`,
    "fi",
  ];
}

/** The undo's file: `sh <file> now|lost|timer`; all but `now` leave a note for the next deployment. */
function undoFileText(undo: Undo): string {
  return [
    PRELUDE,
    DISARM,
    `tm_phase() { if [ -n "\${TM:-}" ]; then printf '%s phase %s\\n' "$TM" "$1"; fi; }`,
    "tm_phase switch",
    ...switchLines(undo.reverse),
    "tm_phase restart",
    ...restartLines(undo.reverse),
    `case "$1" in timer) by="by its own timer";; lost) by="as the next deployment took the host lock";; *) by="";; esac`,
    `if [ -n "$by" ]; then printf '%s, %s, %s\\n' ${quote(undo.note)} "$by" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> ${ROLLED_BACK_NOTE}; fi`,
    command("tm_disarm", undo.token),
  ].join("\n");
}
