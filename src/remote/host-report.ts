import type { HookRecord } from "../core/outcome.js";
import { parseDiskSpace, parseUnitStates, unitFailed } from "./commands.js";
import type { Mark } from "./remote-shell.js";

/** What failed after a switch: a value handed back, never thrown. */
export interface Failure {
  detail: string;
  log?: string;
}

/** What the activation script (session-scripts.ts) reported, read from its marks; pure. */
export interface ActivationReport {
  /** Staging or the upload failed: nothing switched. `freeBytes` tells a full disk. */
  upload?: { reason: string; log: string; space?: { availableBytes: number; totalBytes: number } };
  /** The undo could not be armed: nothing switched. */
  arm?: Failure;
  /** What failed after the forward switch; undefined when everything passed. */
  forward?: Failure;
  /** Present when the host switched back: undefined when that passed its checks, what failed otherwise. */
  back?: { failure?: Failure };
  /** A hook before the switch failed: nothing switched. */
  before?: Failure;
  /** Hooks that failed and only warn (`onFailure: warn`): the host keeps the release. */
  warnings?: Failure[];
  /** Every hook that ran, in order, for the timeline; absent when none did. */
  hooks?: HookRecord[];
}

/** Names of the command checks, in the order the script ran them. */
export type CheckNames = Array<{ app: string; name: string }>;

/** Names of the hooks of each list the script ran (before the switch, after the checks), in order. */
export interface HookNames {
  before: HookName[];
  after: HookName[];
}

export interface HookName {
  app: string;
  name: string;
  /** `onFailure: warn`. */
  warn?: boolean;
}

const NO_HOOKS: HookNames = { before: [], after: [] };

/** Splits the marks at `phase rollback` and reads each side. */
export function readActivation(
  marks: Mark[],
  forwardChecks: CheckNames,
  backChecks: CheckNames,
  forwardHooks: HookNames = NO_HOOKS,
  backHooks: HookNames = NO_HOOKS,
): ActivationReport {
  const at = marks.findIndex((mark) => mark.kind === "phase" && mark.text === "rollback");
  const forward = at < 0 ? marks : marks.slice(0, at);
  const back = at < 0 ? [] : marks.slice(at + 1);
  const forwardRan = hookResults(forward, forwardHooks);
  const backRan = hookResults(back, backHooks);
  const ran = [...forwardRan, ...backRan];
  const report: ActivationReport = ran.length > 0 ? { hooks: ran.map(({ result }) => result) } : {};
  const failed = groups(forward);
  const upload = failed.find((group) => group.head.kind === "fail" && group.head.text.startsWith("upload "));
  if (upload) {
    const space = forward.find((mark) => mark.kind === "space");
    report.upload = {
      reason: lastLine(upload.lines) || `exit ${upload.head.text.split(" ")[1] ?? "?"}`,
      log: upload.lines.join("\n"),
      ...(space && parseDiskSpace(space.text) ? { space: parseDiskSpace(space.text) } : {}),
    };
    return report;
  }
  const arm = failed.find((group) => group.head.kind === "fail" && group.head.text.startsWith("arm "));
  if (arm)
    return { ...report, arm: { detail: `could not arm the host's rollback timer: ${lastLine(arm.lines)}`, log: arm.lines.join("\n") } };
  const firstFailing = (side: typeof ran) => side.find(({ result, warn }) => result.exit !== 0 && !warn);
  const before = firstFailing(forwardRan.filter(({ result }) => result.phase.startsWith("pre-")));
  if (before) return { ...report, before: hookFailure(before.result) };
  const warnings = forwardRan.filter(({ result, warn }) => result.exit !== 0 && warn).map(({ result }) => hookFailure(result));
  if (warnings.length > 0) report.warnings = warnings;
  report.forward = segmentFailure(forward, forwardChecks) ?? mapped(firstFailing(forwardRan));
  if (at >= 0) report.back = { failure: segmentFailure(back, backChecks) ?? mapped(firstFailing(backRan)) };
  return report;
}

const mapped = (found: { result: HookRecord } | undefined) => (found ? hookFailure(found.result) : undefined);

/** A hook that failed, for people: which, how, and its last line. */
function hookFailure(hook: HookRecord): Failure {
  // timeout exits 124 when it stopped the hook, 137 when the hook ignored that and was killed.
  const how = hook.exit === 124 || hook.exit === 137 ? "timed out and was killed" : `failed (exit ${hook.exit})`;
  const last = lastLine(hook.log.split("\n"));
  return {
    detail: `${hook.phase} hook ${JSON.stringify(hook.name)} of ${hook.app} ${how}${last ? `: ${last}` : ""}`,
    ...(hook.log ? { log: hook.log } : {}),
  };
}

/** The hooks a segment ran, from their `hook <phase> <index> <exit> <ms>` marks and the log lines after each. */
function hookResults(marks: Mark[], names: HookNames): Array<{ result: HookRecord; warn: boolean }> {
  const found: Array<{ result: HookRecord; warn: boolean }> = [];
  for (const group of groups(marks)) {
    if (group.head.kind !== "hook") continue;
    const [phase = "", index = "0", exit = "1", ms = "0"] = group.head.text.split(" ");
    const list = phase.startsWith("pre-") ? names.before : names.after;
    const named = list[Number(index)];
    found.push({
      result: {
        phase,
        app: named?.app ?? "?",
        name: named?.name ?? `#${index}`,
        exit: Number(exit),
        ms: Number(ms),
        log: group.lines.join("\n").trimEnd(),
      },
      warn: named?.warn === true,
    });
  }
  return found;
}

/** A mark that opens a group (`fail`, `check`, `journal-of`) and the `log` or `journal` lines that follow it. */
interface Group {
  head: Mark;
  lines: string[];
}

function groups(marks: Mark[]): Group[] {
  const found: Group[] = [];
  for (const mark of marks) {
    if (["fail", "check", "journal-of", "hook"].includes(mark.kind)) found.push({ head: mark, lines: [] });
    else if ((mark.kind === "log" || mark.kind === "journal") && found.length > 0) found.at(-1)!.lines.push(mark.text);
  }
  return found;
}

function segmentFailure(marks: Mark[], checks: CheckNames): Failure | undefined {
  const found = groups(marks);
  const fail = found.find((group) => group.head.kind === "fail");
  if (fail) {
    const [step = "", code = "?"] = fail.head.text.split(" ");
    const why = lastLine(fail.lines) || `exit ${code}`;
    const log = fail.lines.join("\n").trimEnd();
    const detail =
      step === "reload"
        ? `systemd could not reload its units: ${why}`
        : step === "units"
          ? `could not read the units' state: ${why}`
          : `the switch failed: ${why}`;
    return { detail, ...(log ? { log } : {}) };
  }
  const journals = found.filter((group) => group.head.kind === "journal-of");
  if (journals.length > 0) {
    const failed = new Set(journals.map((group) => group.head.text));
    const states = parseUnitStates(
      marks
        .filter((mark) => mark.kind === "unit")
        .map((mark) => mark.text)
        .join("\n"),
    ).filter((state) => failed.has(state.unit) || unitFailed(state));
    return {
      detail: states
        .map((unit) => `${unit.unit} ${unit.activeState === "failed" ? "failed" : unit.activeState} (${unit.result})`)
        .join(", "),
      log: journals.map((group) => `${group.head.text}:\n${group.lines.join("\n").trimEnd()}`).join("\n"),
    };
  }
  const check = found.find((group) => group.head.kind === "check");
  if (check) {
    const [index = "0", code = "?"] = check.head.text.split(" ");
    const named = checks[Number(index)];
    return {
      detail: `check ${JSON.stringify(named?.name ?? `#${index}`)} of ${named?.app ?? "?"} failed (exit ${code})`,
      log: check.lines.join("\n").trimEnd(),
    };
  }
  return undefined;
}

const lastLine = (lines: string[]) =>
  lines
    .filter((line) => line.trim() !== "")
    .at(-1)
    ?.trim() ?? "";
