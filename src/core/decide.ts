import type { TrackingRule } from "./config.js";
import { isLive, type HostRecord } from "./outcome.js";
import { movesForward, tracksRef, type Resolution } from "./track.js";

/**
 * What the operator does with a request for an environment, as pure
 * decisions over small state records: the intake's (ask for a deployment or
 * not) and the deploy job's (keep the environment where it is, or deploy
 * which hosts). The adapters, operator/intake.ts and operator/deploy-job.ts,
 * gather the state, carry the decision out, and word nothing themselves.
 */

/** A host of an earlier attempt, as far as deciding goes. */
type PastHost = Pick<HostRecord, "host" | "outcome" | "skip">;

/** The environment's last attempt: its newest store entry. */
export interface LastAttempt {
  id: string;
  sourceRef: string;
  sourceCommit: string;
  /** Set while `tidemark rollback` pins the environment. */
  pin?: string;
  hosts: ReadonlyArray<PastHost>;
}

/**
 * What a deploy job decides from. It is gathered in steps, cheapest first,
 * and `decide` asks for the next one (`read-history`, then `read-plan`) only
 * when what it has does not settle the job: a pinned environment never reads
 * its trees.
 */
export interface DeployState {
  environment: string;
  track: TrackingRule;
  /** Where the rule points now: the request that started the job was a hint. */
  resolution: Resolution;
  history?: {
    /** The newest store entry; none before the first deployment. */
    last: LastAttempt | undefined;
    /** The commits asked for up to the job's start, oldest first. */
    requested: readonly string[];
  };
  plan?: {
    /** The hosts the plan changes. */
    changing: readonly string[];
    /** Every host of the environment's tree. */
    desired: readonly string[];
    /** The environment's tree is the one its last attempt had: the commit changed only other environments' files. */
    sameTree: boolean;
  };
}

/** Where a settled job brings the environment, and the commits asked for before that it brings in their place (reported superseded). */
interface Settled {
  ref: string;
  commit: string;
  superseded: string[];
}

export type DeployDecision =
  /** Read the next part of the state and decide again. */
  | { kind: "read-history" | "read-plan"; ref: string; commit: string }
  /** The rule points nowhere (a deleted branch or pin): the hosts keep what they run. */
  | { kind: "stays"; reason: string }
  /** `tidemark rollback` pinned the environment: the commit waits for `tidemark unpin`. */
  | { kind: "pinned"; pin: string; commit: string; reason: string }
  /** A `tags:` rule points to an older tag than the one deployed last (the newest was deleted). */
  | { kind: "older"; ref: string; last: string; reason: string }
  /**
   * The commit was attempted last and no host is left to try: nothing to do.
   * `finished` are the hosts that attempt left behind and another one has
   * finished since, so the commit's statuses can turn green.
   */
  | ({ kind: "up-to-date"; id: string; finished: string[] } & Settled)
  /** A new commit that leaves the environment's tree as it was (only other environments' files changed): no deployment, nothing recorded. */
  | ({ kind: "no-change" } & Settled)
  /** Deploy `hosts`; `hold` are the plan's other hosts, left as they are (recorded skipped, with why). */
  | ({ kind: "deploy"; hosts: string[]; hold: ReadonlyMap<string, string> } & Settled);

/**
 * The deploy job's decision, in the order the job has always checked: the
 * rule, the pin, the order of refs, then the plan against the last attempt
 * (a retry of the same commit holds back the hosts where it failed).
 */
export function decide(state: DeployState): DeployDecision {
  const { environment, resolution, history, plan } = state;
  if (resolution.ref === null) return { kind: "stays", reason: `${resolution.reason}; ${environment} stays where it is` };
  const { ref, commit } = resolution;
  if (!history) return { kind: "read-history", ref, commit };
  const { last } = history;
  // Pinned by tidemark rollback: the push is kept in mind (polls ask again) and deployed after tidemark unpin.
  if (last?.pin)
    return {
      kind: "pinned",
      pin: last.pin,
      commit,
      reason: `${environment} is pinned (${last.pin}); ${commit.slice(0, 7)} waits for tidemark unpin ${environment}`,
    };
  if (last && !movesForward(state.track, last.sourceRef, ref))
    return {
      kind: "older",
      ref,
      last: last.sourceRef,
      reason: `${ref} is older than ${last.sourceRef}, deployed last; ${environment} stays where it is`,
    };
  if (!plan) return { kind: "read-plan", ref, commit };

  const settled: Settled = { ref, commit, superseded: history.requested.filter((asked) => asked !== commit) };
  const again = last?.sourceCommit === commit ? last : undefined;
  const hold = again ? heldBack(again.hosts, commit) : new Map<string, string>();
  const hosts = plan.changing.filter((host) => !hold.has(host));
  if (hosts.length > 0) return { kind: "deploy", hosts, hold, ...settled };
  // A new tree that every host runs already (a revert after a host rolled itself back) is still recorded, with no host to deploy.
  if (!again) return plan.sameTree ? { kind: "no-change", ...settled } : { kind: "deploy", hosts, hold, ...settled };
  // A held-back host is still behind: the commit is not whole on the environment.
  const desired = new Set(plan.desired);
  const finished =
    hold.size > 0 ? [] : again.hosts.filter((host) => !isLive(host.outcome) && desired.has(host.host)).map((host) => host.host);
  return { kind: "up-to-date", id: again.id, finished, ...settled };
}

/** What a rollout leaves to its job: run again for the hosts a shutdown kept from starting; have polls ask again for the hosts a passing failure left behind. */
export function afterRollout(hosts: ReadonlyArray<PastHost>): { stopped: boolean; behind: boolean } {
  return {
    stopped: hosts.some((host) => host.outcome === "skipped" && host.skip === "stopped"),
    behind: hosts.some((host) => host.outcome === "unreachable" || host.outcome === "failed"),
  };
}

/**
 * The hosts that a retry of the same commit (a poll, while a passing failure
 * left hosts behind) leaves as they are, each with why: where the commit
 * itself failed (a rollback), and the hosts that failure kept from starting.
 * Unreachable, cut-off and stopped hosts are tried again.
 */
export function heldBack(previous: ReadonlyArray<PastHost>, commit: string): Map<string, string> {
  const failedHere = (host: PastHost) => host.outcome === "rolled-back" || host.outcome === "rollback-failed" || host.skip === "held-back";
  const gated = previous.some(failedHere);
  const held = previous.filter((host) => failedHere(host) || (gated && host.outcome === "skipped" && host.skip !== "stopped"));
  return new Map(
    held.map((host) => [
      host.host,
      `held back: ${commit.slice(0, 7)} failed on this environment; a new commit or tidemark deploy tries again`,
    ]),
  );
}

/** What the intake decides from, for one environment. */
export interface IntakeState {
  environment: string;
  track: TrackingRule;
  /** A push of one ref (a hint), or a poll of every environment. */
  trigger: { kind: "push"; ref: string; after: string; deleted: boolean } | { kind: "poll" };
  /** Where the rule points now. */
  resolution: Resolution;
  /** What was last asked for. */
  lastRequested: { ref: string; commit: string } | undefined;
  /** A pin holds a commit back, or a passing failure left hosts behind it: polls ask for that commit again. */
  retrying: boolean;
}

/** The pushed commit, when it is what the rule follows: remembered, to be reported superseded should a newer one be deployed instead. */
type Noted = { note?: string };

export type IntakeDecision =
  /** A push of a ref the rule does not follow. */
  | { kind: "ignored" }
  /** A deleted ref, or a rule that points nowhere: the environment stays where it is. */
  | { kind: "stays"; reason: string }
  | ({ kind: "older"; ref: string; last: string; reason: string } & Noted)
  /** Asked for already. */
  | ({ kind: "current"; commit: string } & Noted)
  /** Ask for a deployment; `again` when it is the commit asked for last (a retry: its status already says why it waits). */
  | ({ kind: "request"; ref: string; commit: string; again: boolean } & Noted);

/** The intake's decision for one environment: ask for a deployment, or say why not. */
export function decideIntake(state: IntakeState): IntakeDecision {
  const { environment, trigger, resolution, lastRequested: last } = state;
  if (trigger.kind === "push" && !tracksRef(state.track, trigger.ref)) return { kind: "ignored" };
  if (trigger.kind === "push" && trigger.deleted)
    return { kind: "stays", reason: `${trigger.ref} was deleted; ${environment} stays where it is` };
  if (resolution.ref === null) return { kind: "stays", reason: `${resolution.reason}; ${environment} stays where it is` };
  const { ref, commit } = resolution;
  const noted: Noted = trigger.kind === "push" && trigger.ref === ref ? { note: trigger.after } : {};
  const again = last?.commit === commit;
  if (again && !(trigger.kind === "poll" && state.retrying)) return { kind: "current", commit, ...noted };
  // The same rule as the job's: a tags: environment never goes back to an older tag.
  if (last && !movesForward(state.track, last.ref, ref))
    return { kind: "older", ref, last: last.ref, reason: `${ref} is older than ${last.ref}; ${environment} stays where it is`, ...noted };
  return { kind: "request", ref, commit, again, ...noted };
}
