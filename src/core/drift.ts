/**
 * Drift: how a host differs from the release the store records for it, as
 * its snapshot (taken when the release went live) and its config tree say.
 * Pure: what the host's check printed in, findings out.
 */

export const DRIFT_KINDS = ["modified", "added", "removed", "mode", "owner", "link", "unit-disabled", "unit-inactive"] as const;
export type DriftKind = (typeof DRIFT_KINDS)[number];

export interface DriftFinding {
  kind: DriftKind;
  /** `app/path` in the release for files; the host path for links; the unit's name for units. */
  path: string;
}

/** What a host should have: the releases the store records, the links they place (`current` too), the units they enable. */
export interface DriftExpectation {
  apps: Array<{ app: string; release: string }>;
  links: Array<{ path: string; target: string }>;
  units: string[];
}

export type HostDriftState = "clean" | "drift" | "busy" | "unreachable" | "failed";

export interface HostDrift {
  host: string;
  state: HostDriftState;
  findings: DriftFinding[];
  /** Apps whose release has no snapshot (it went live before Tidemark took them): their files are not compared. */
  unknown?: string[];
  /** Why a host was not checked (busy, unreachable, failed). */
  detail?: string;
  /** Healed FIGHTING_HEALS times within the last hour and changed again: something else keeps changing it, so it is healed no more. */
  fighting?: true;
  /** The heal deployment that gave the host what it runs again (drift `mode: heal`). */
  healed?: string;
}

/** Heals of one host within an hour after which it is left to a person: something else keeps changing it. */
export const FIGHTING_HEALS = 3;

/** The marks of the host's check (snapshots.ts), without the marker: `drift <kind> <path>`, `gone <app>`, `unknown <app>`, `link <target>\t<path>`, `unit <line>`, `busy`, `end`. */
export interface CheckMark {
  kind: string;
  text: string;
}

/**
 * Unit file states of a unit as deployed. `linked` is a unit file linked in
 * with no [Install] section, which `systemctl enable` leaves as it is; a
 * disable removes the link itself, so such a unit reads as not found.
 */
const ENABLED = new Set(["enabled", "enabled-runtime", "linked", "linked-runtime", "static", "indirect", "generated", "alias"]);

/** A host's findings from what its check printed; `undefined` when the check did not reach its end (it was cut). */
export function readDriftCheck(
  host: string,
  expect: DriftExpectation,
  marks: CheckMark[],
  ignore: readonly string[],
): HostDrift | undefined {
  if (marks.some((mark) => mark.kind === "busy"))
    return { host, state: "busy", findings: [], detail: "a deployment holds the host lock; checked next time" };
  if (!marks.some((mark) => mark.kind === "end")) return undefined;
  const findings: DriftFinding[] = [];
  const unknown: string[] = [];
  const links = new Map<string, string>();
  const units: string[] = [];
  for (const { kind, text } of marks) {
    if (kind === "drift") {
      const space = text.indexOf(" ");
      const found = text.slice(0, space) as DriftKind;
      if ((DRIFT_KINDS as readonly string[]).includes(found)) findings.push({ kind: found, path: text.slice(space + 1) });
    } else if (kind === "gone") findings.push({ kind: "removed", path: `${text}/` });
    else if (kind === "unknown") unknown.push(text);
    else if (kind === "link") {
      const tab = text.indexOf("\t");
      links.set(text.slice(tab + 1), text.slice(0, tab));
    } else if (kind === "unit") units.push(text);
  }
  for (const { path, target } of expect.links) if (links.get(path) !== target) findings.push({ kind: "link", path });
  const states = unitStates(units);
  for (const unit of expect.units) {
    const state = states.get(unit);
    if (!state || !ENABLED.has(state.UnitFileState ?? "")) findings.push({ kind: "unit-disabled", path: unit });
    if (!state || inactive(state)) findings.push({ kind: "unit-inactive", path: unit });
  }
  const kept = sortFindings(findings.filter((finding) => !ignore.some((glob) => globMatches(glob, finding.path))));
  return {
    host,
    state: kept.length > 0 ? "drift" : "clean",
    findings: kept,
    ...(unknown.length > 0 ? { unknown: unknown.sort() } : {}),
  };
}

/** Running, or a oneshot that ran and exits (it is inactive between runs by design). */
function inactive(state: Record<string, string>): boolean {
  const active = state.ActiveState ?? "";
  if (["active", "activating", "reloading"].includes(active)) return false;
  return !(active === "inactive" && state.Type === "oneshot" && state.RemainAfterExit === "no");
}

/** `systemctl show` blocks (blank lines between units), by Id. */
function unitStates(lines: string[]): Map<string, Record<string, string>> {
  const states = new Map<string, Record<string, string>>();
  let block: Record<string, string> = {};
  const close = () => {
    if (block.Id) states.set(block.Id, block);
    block = {};
  };
  for (const line of lines) {
    if (line.trim() === "") close();
    else block[line.slice(0, line.indexOf("="))] = line.slice(line.indexOf("=") + 1);
  }
  close();
  return states;
}

const sortFindings = (findings: DriftFinding[]) =>
  findings.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : DRIFT_KINDS.indexOf(a.kind) - DRIFT_KINDS.indexOf(b.kind)));

/**
 * An ignore glob: `*` and `?` within one path segment, `**` across them
 * (`nginx/cache/**`, `*.log` in any dir when it has no `/`, as gitignore).
 */
export function globMatches(glob: string, path: string): boolean {
  const anchored = glob.includes("/") ? glob.replace(/^\//, "") : `**/${glob}`;
  const pattern = anchored
    .split(/(\*\*\/?|\*|\?)/)
    .map((part) =>
      part === "**/"
        ? "(?:.*/)?"
        : part === "**"
          ? ".*"
          : part === "*"
            ? "[^/]*"
            : part === "?"
              ? "[^/]"
              : part.replace(/[.+^${}()|[\]\\]/g, "\\$&"),
    )
    .join("");
  return new RegExp(`^${pattern}$`).test(path.replace(/^\//, ""));
}

/** "web02: nginx/nginx.conf modified" for the drift status and logs: the first findings, and how many more. */
export function driftLine(drift: HostDrift, most = 3): string {
  const shown = drift.findings.slice(0, most).map((finding) => `${finding.path} ${finding.kind}`);
  const more = drift.findings.length - shown.length;
  const fighting = drift.fighting ? `fighting (healed ${FIGHTING_HEALS} times within an hour, changed again): ` : "";
  return `${drift.host}: ${fighting}${shown.join(", ")}${more > 0 ? ` and ${more} more` : ""}`;
}
