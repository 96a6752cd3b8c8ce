/**
 * One scenario of the reliability campaign (`npm run campaign`), the default
 * export of `test/campaign/<name>.ts`: it brings up its own test bed, does its
 * faults, and counts what a user would check.
 */
export type Scenario = (log: (line: string) => void) => Promise<ScenarioReport>;

export interface ScenarioReport {
  title: string;
  /** What was done, in a sentence or two, for the report. */
  what: string;
  /** Deployments asked for (pushes, polls, CLI runs). */
  deployments: number;
  /** A ref's final commit never applied to a host that should run it. */
  lost: number;
  /** The same host and commit applied twice. */
  duplicated: number;
  /** Hosts left with `target` ≠ `current`. */
  halfSwitched: number;
  /** From the last push or fault to the final commit's final status; null when the scenario posts none. */
  finalStatusMs: number | null;
  /** Further measured rows: [label, value]. */
  figures: Array<[string, string]>;
  /** What went wrong; empty when the scenario passed. */
  findings: string[];
}

export function passed(report: ScenarioReport): boolean {
  return report.lost === 0 && report.duplicated === 0 && report.halfSwitched === 0 && report.findings.length === 0;
}
