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
}

/** Names of the command checks, in the order the script ran them. */
export type CheckNames = Array<{ app: string; name: string }>;

/** Splits the marks at `phase rollback` and reads each side. */
export function readActivation(marks: Mark[], forwardChecks: CheckNames, backChecks: CheckNames): ActivationReport {
  const at = marks.findIndex((mark) => mark.kind === "phase" && mark.text === "rollback");
  const forward = at < 0 ? marks : marks.slice(0, at);
  const report: ActivationReport = {};
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
  if (arm) return { arm: { detail: `could not arm the host's rollback timer: ${lastLine(arm.lines)}`, log: arm.lines.join("\n") } };
  report.forward = segmentFailure(forward, forwardChecks);
  if (at >= 0) {
    const back = marks.slice(at + 1);
    report.back = { failure: segmentFailure(back, backChecks) };
  }
  return report;
}

/** A mark that opens a group (`fail`, `check`, `journal-of`) and the `log` or `journal` lines that follow it. */
interface Group {
  head: Mark;
  lines: string[];
}

function groups(marks: Mark[]): Group[] {
  const found: Group[] = [];
  for (const mark of marks) {
    if (["fail", "check", "journal-of"].includes(mark.kind)) found.push({ head: mark, lines: [] });
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
