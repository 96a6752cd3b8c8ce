/** What became of one host in one deployment: data, never an exception. */
export const HOST_OUTCOMES = ["unchanged", "deployed", "rolled-back", "rollback-failed", "failed", "unreachable", "skipped"] as const;
export type HostOutcomeKind = (typeof HOST_OUTCOMES)[number];

export interface HostOutcome {
  host: string;
  outcome: HostOutcomeKind;
  /** One line for people, e.g. "nginx.service failed (exit-code)". */
  detail?: string;
}

/** How a rolled-back host's detail starts when the rollback went past a hook that has no down: `(irreversible: migrate) ...`. */
export const IRREVERSIBLE = "(irreversible: ";

/** One step of a host's apply as it began, in ms after the deployment started; `done` ends the host. */
export interface TimelineStep {
  phase: string;
  at: number;
}

/**
 * Why a `skipped` host was not started, for the operator to act on (the
 * detail says it for people): `held-back`, the commit failed on this
 * environment and a retry of it leaves the host as it is; `stopped`, the
 * operator was shutting down and the job runs again for it; `halted`, the
 * rollout policy stopped the rollout (a canary or too many hosts failed).
 */
export const SKIP_REASONS = ["held-back", "stopped", "halted"] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

/** A host's outcome as the store keeps it: the outcome, and how it came about. */
export interface HostRecord extends HostOutcome {
  /** Set on every `skipped` host. */
  skip?: SkipReason;
  timeline?: TimelineStep[];
  /** For people: the failing unit's last journal lines, or the failing check's output. */
  log?: string;
  /** Bytes of release content sent to the host: 0 when every release was there already (a return to an earlier tree). */
  uploadedBytes?: number;
  /** The app hooks that ran on the host, in order. */
  hooks?: HookRecord[];
}

/** One app hook as it ran: its phase, whose it is, how it ended, how long it took, what it printed (last lines). */
export interface HookRecord {
  phase: string;
  app: string;
  name: string;
  exit: number;
  ms: number;
  log: string;
}

/** What started a store record; `unpin` records no deployment, only that the environment follows its ref again. */
export const TRIGGERS = ["webhook", "poll", "cli", "rollback", "unpin", "heal"] as const;
export type Trigger = (typeof TRIGGERS)[number];

/** Outcomes after which the deployed tree is what runs on the host. */
export function isLive(outcome: HostOutcomeKind): boolean {
  return outcome === "deployed" || outcome === "unchanged";
}

/** A deployment as a whole: every host live, or some not (failed, rolled back, skipped), or only unreachable ones behind. */
export type DeploymentOutcome = "succeeded" | "failed" | "unreachable";

export function deploymentOutcome(hosts: ReadonlyArray<{ outcome: HostOutcomeKind }>): DeploymentOutcome {
  const behind = hosts.filter((host) => !isLive(host.outcome));
  if (behind.length === 0) return "succeeded";
  return behind.every((host) => host.outcome === "unreachable") ? "unreachable" : "failed";
}
