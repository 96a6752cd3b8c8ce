/** What became of one host in one deployment: data, never an exception. */
export const HOST_OUTCOMES = ["unchanged", "deployed", "rolled-back", "rollback-failed", "failed", "unreachable", "skipped"] as const;
export type HostOutcomeKind = (typeof HOST_OUTCOMES)[number];

export interface HostOutcome {
  host: string;
  outcome: HostOutcomeKind;
  /** One line for people, e.g. "nginx.service failed (exit-code)". */
  detail?: string;
}

export const TRIGGERS = ["webhook", "poll", "cli", "rollback"] as const;
export type Trigger = (typeof TRIGGERS)[number];

/** Outcomes after which the deployed tree is what runs on the host. */
export function isLive(outcome: HostOutcomeKind): boolean {
  return outcome === "deployed" || outcome === "unchanged";
}
