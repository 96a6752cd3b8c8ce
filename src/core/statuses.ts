import { driftLine, type HostDrift } from "./drift.js";
import { deploymentOutcome, IRREVERSIBLE, isLive, type HostOutcome } from "./outcome.js";
import type { Plan } from "./plan.js";
import { formatProblem, type Problem } from "./problems.js";

/** A commit status as GitHub takes it; the description is cut to GitHub's 140 characters. */
export interface CommitStatus {
  sha: string;
  context: string;
  state: "pending" | "success" | "failure" | "error";
  description: string;
  targetUrl?: string;
}

export const envContext = (environment: string) => `tidemark/${environment}`;
export const hostContext = (environment: string, host: string) => `tidemark/${environment}/${host}`;
export const planContext = (environment: string) => `tidemark/plan/${environment}`;
const driftContext = (environment: string) => `tidemark/${environment}/drift`;

const MAX_DESCRIPTION = 140;

export function fitDescription(text: string): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length <= MAX_DESCRIPTION ? line : `${line.slice(0, MAX_DESCRIPTION - 1)}…`;
}

const short = (sha: string) => sha.slice(0, 7);
const hostsWord = (n: number) => (n === 1 ? "host" : "hosts");

/** What a deployment's statuses are made of: data the deploy job has at hand. */
export interface DeploymentFacts {
  id: string;
  environment: string;
  sourceCommit: string;
  /** Every host of the environment with its outcome (unchanged ones too). */
  hosts: HostOutcome[];
  returnTo?: { id: string; sourceCommit: string };
  /** Per-host statuses are posted for these hosts; empty when they are off. */
  hostStatuses: boolean;
  targetUrl?: string;
}

function status(
  sha: string,
  context: string,
  state: CommitStatus["state"],
  description: string,
  targetUrl: string | undefined,
): CommitStatus {
  return { sha, context, state, description: fitDescription(description), ...(targetUrl ? { targetUrl } : {}) };
}

const returnPrefix = (facts: { returnTo?: { id: string; sourceCommit: string } }) =>
  facts.returnTo ? `return to ${facts.returnTo.id} (${short(facts.returnTo.sourceCommit)}): ` : "";

/** `pending` on the commit and on each host that changes, when the rollout starts. */
export function startStatuses(facts: Omit<DeploymentFacts, "hosts">, changing: string[]): CommitStatus[] {
  const { sourceCommit: sha, environment, targetUrl } = facts;
  return [
    status(
      sha,
      envContext(environment),
      "pending",
      `${returnPrefix(facts)}deploying to ${changing.length} ${hostsWord(changing.length)}`,
      targetUrl,
    ),
    ...(facts.hostStatuses ? changing.map((host) => status(sha, hostContext(environment, host), "pending", "deploying", targetUrl)) : []),
  ];
}

/**
 * The final statuses of a deployment, in the order they are posted: one per
 * host, then the environment's last, so that a script or a person who waits
 * for `tidemark/<env>` to turn final finds every host's status final too.
 */
export function finalStatuses(facts: DeploymentFacts): CommitStatus[] {
  const { sourceCommit: sha, environment, hosts, targetUrl } = facts;
  const live = hosts.filter((host) => isLive(host.outcome));
  const behind = hosts.filter((host) => !isLive(host.outcome));
  const outcome = deploymentOutcome(hosts);
  let env: CommitStatus;
  if (outcome === "succeeded") {
    env = status(
      sha,
      envContext(environment),
      "success",
      `${returnPrefix(facts)}deployed to ${live.length}/${hosts.length} ${hostsWord(hosts.length)}`,
      targetUrl,
    );
  } else if (behind.length === 1 && behind[0]!.outcome !== "unreachable") {
    env = status(
      sha,
      envContext(environment),
      "failure",
      `${returnPrefix(facts)}${behind[0]!.host}: ${behind[0]!.detail ?? behind[0]!.outcome}`,
      targetUrl,
    );
  } else {
    const groups = new Map<string, string[]>();
    for (const host of behind) groups.set(host.outcome, [...(groups.get(host.outcome) ?? []), host.host]);
    const parts = [...groups].map(
      ([kind, names], i) =>
        `${i === 0 ? `${names.length} of ${hosts.length} ${hostsWord(hosts.length)}` : names.length} ${kind.replace("-", " ")} (${names.join(", ")})`,
    );
    env = status(
      sha,
      envContext(environment),
      outcome === "unreachable" ? "error" : "failure",
      `${returnPrefix(facts)}${parts.join("; ")}`,
      targetUrl,
    );
  }
  return [...(facts.hostStatuses ? hosts.map((host) => hostStatus(facts, host)) : []), env];
}

function hostStatus(facts: DeploymentFacts, host: HostOutcome): CommitStatus {
  const context = hostContext(facts.environment, host.host);
  const say = (state: CommitStatus["state"], text: string) => status(facts.sourceCommit, context, state, text, facts.targetUrl);
  switch (host.outcome) {
    case "deployed":
      return say(
        "success",
        `${returnPrefix(facts)}deployed ${short(facts.sourceCommit)}${host.detail?.startsWith(IRREVERSIBLE) ? ` ${host.detail}` : ""}`,
      );
    case "unchanged":
      return say("success", `unchanged: already runs this config`);
    case "unreachable":
      return say("error", `unreachable: ${host.detail ?? "no answer"}`);
    case "rollback-failed":
      return say("failure", `rollback failed: ${host.detail ?? ""}`);
    default:
      // "rolled-back (irreversible: migrate) ...": a rollback past a hook with no down says so first.
      return say(
        "failure",
        host.detail ? `${host.outcome}${host.detail.startsWith(IRREVERSIBLE) ? " " : ": "}${host.detail}` : host.outcome,
      );
  }
}

/**
 * Every host runs the commit, though the deployment that recorded it last left
 * some behind: another attempt (a worker that took the job over) finished them.
 * The commit's final word turns green.
 */
export function convergedStatuses(facts: Omit<DeploymentFacts, "hosts" | "returnTo">, hosts: string[], finished: string[]): CommitStatus[] {
  const { sourceCommit: sha, environment, targetUrl } = facts;
  // Hosts first, the environment last: the same order as finalStatuses.
  return [
    ...(facts.hostStatuses
      ? finished.map((host) => status(sha, hostContext(environment, host), "success", `deployed ${short(sha)}`, targetUrl))
      : []),
    status(
      sha,
      envContext(environment),
      "success",
      `deployed to ${hosts.length}/${hosts.length} ${hostsWord(hosts.length)} (${finished.join(", ")} by another attempt)`,
      targetUrl,
    ),
  ];
}

/**
 * The environment's last drift check, on the commit its hosts run: success
 * "no drift on 10 hosts" (or which hosts were healed), or failure naming the
 * first host that still differs, a fighting one first ("web02: nginx/nginx.conf
 * modified"), and how many more do.
 */
export function driftStatus(environment: string, sha: string, hosts: readonly HostDrift[], targetUrl?: string): CommitStatus {
  const context = driftContext(environment);
  const open = hosts.filter((host) => host.state === "drift" && !host.healed);
  if (open.length > 0) {
    const first = open.find((host) => host.fighting) ?? open[0]!;
    const more = open.length > 1 ? ` (+${open.length - 1} more host${open.length === 2 ? "" : "s"})` : "";
    return status(sha, context, "failure", `${driftLine(first)}${more}`, targetUrl);
  }
  const clean = hosts.filter((host) => host.state === "clean").length;
  const healed = hosts.filter((host) => host.healed);
  const unchecked = hosts.length - clean - healed.length;
  const note = unchecked > 0 ? ` (${unchecked} not checked)` : "";
  if (healed.length === 0) return status(sha, context, "success", `no drift on ${clean} host${clean === 1 ? "" : "s"}${note}`, targetUrl);
  const more = healed.length > 1 ? ` (+${healed.length - 1} more host${healed.length === 2 ? "" : "s"})` : "";
  return status(sha, context, "success", `healed ${driftLine(healed[0]!)}${more}; ${clean} clean${note}`, targetUrl);
}

/** A commit that changes nothing for the environment (only another environment's files): one word, no deployment, no per-host statuses. */
export function noChangeStatus(environment: string, sha: string, targetUrl?: string): CommitStatus {
  return status(sha, envContext(environment), "success", `no change for ${environment}`, targetUrl);
}

/** A deployment from the CLI that stopped on an error before it was recorded: the commit's pending gets a final word (the operator retries instead). */
export function abortedStatus(environment: string, sha: string, reason: string, targetUrl?: string): CommitStatus {
  return status(sha, envContext(environment), "error", `stopped before it was recorded: ${reason}`, targetUrl);
}

/** A config tree the operator could not read: `error`, naming the file and the field. */
export function invalidConfigStatus(environment: string, sha: string, problems: Problem[], targetUrl?: string): CommitStatus {
  const first = problems[0];
  const more = problems.length > 1 ? ` (+${problems.length - 1} more)` : "";
  return status(
    sha,
    envContext(environment),
    "error",
    first ? `${first.undecryptable ? "" : "invalid config: "}${formatProblem(first)}${more}` : "invalid config",
    targetUrl,
  );
}

/** A commit asked for and not deployed because a newer one was: it gets a final word. */
export function supersededStatus(environment: string, sha: string, by: string, targetUrl?: string): CommitStatus {
  return status(sha, envContext(environment), "success", `superseded by ${short(by)}, deployed in its place`, targetUrl);
}

export function queuedStatus(environment: string, sha: string, targetUrl?: string): CommitStatus {
  return status(sha, envContext(environment), "pending", `queued for ${environment}`, targetUrl);
}

export function pinnedStatus(environment: string, sha: string, pin: string, targetUrl?: string): CommitStatus {
  return status(
    sha,
    envContext(environment),
    "pending",
    `not deployed: ${environment} is pinned (${pin}); tidemark unpin ${environment} deploys it`,
    targetUrl,
  );
}

/** A pull request's preview: what merging it would change, host by host. */
export function planStatus(environment: string, sha: string, plan: Plan, targetUrl?: string): CommitStatus {
  if (plan.hosts.length === 0) return status(sha, planContext(environment), "success", "no host would change", targetUrl);
  const hosts = plan.hosts.map((host) => {
    const apps = host.apps.map((app) => `${app.change === "added" ? "+" : app.change === "removed" ? "-" : "~"}${app.app}`);
    return `${host.host} ${apps.join(" ")}`.trim();
  });
  const taking = plan.hosts.filter((host) => host.takesOver.length > 0).map((host) => host.host);
  const rollback =
    taking.length === 0
      ? "rollback available"
      : `rollback available; ${taking.join(", ")} take${taking.length === 1 ? "s" : ""} over host paths (what is there is kept)`;
  return status(
    sha,
    planContext(environment),
    "success",
    `${plan.hosts.length} ${hostsWord(plan.hosts.length)} would change: ${hosts.join(", ")}; ${rollback}`,
    targetUrl,
  );
}

export function invalidPlanStatus(environment: string, sha: string, problems: Problem[], targetUrl?: string): CommitStatus {
  const first = problems[0];
  const more = problems.length > 1 ? ` (+${problems.length - 1} more)` : "";
  return status(
    sha,
    planContext(environment),
    "failure",
    first ? `invalid: ${formatProblem(first)}${more}` : "invalid config tree",
    targetUrl,
  );
}
