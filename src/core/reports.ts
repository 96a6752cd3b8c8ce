import type { Redactor } from "./redact.js";
import { abortedStatus, finalStatuses, startStatuses, supersededStatus, type CommitStatus, type DeploymentFacts } from "./statuses.js";

/**
 * What goes back to GitHub, as data: commit statuses and GitHub Deployment
 * states, in batches whose order is the order they are posted in. The
 * operator's queue and the CLI post the same batches, built here.
 */
export type GitHubDeploymentState = "in_progress" | "success" | "failure" | "error";

/** A GitHub deployment's state changing, for the Tidemark deployment `id`. */
export interface DeploymentReport {
  id: string;
  environment: string;
  sha: string;
  state: GitHubDeploymentState;
  description: string;
  targetUrl?: string;
}

export type Report = { kind: "status"; status: CommitStatus } | { kind: "deployment"; deployment: DeploymentReport };

/** The key under which reports are ordered: one commit status context, or one deployment. */
export function reportKey(report: Report): string {
  return report.kind === "status" ? `status:${report.status.sha}:${report.status.context}` : `deployment:${report.deployment.id}`;
}

/** A report without secrets in its description: the operator's queue and the CLI post through the same. */
export function redactReport(report: Report, redact: Redactor): Report {
  return report.kind === "status"
    ? { ...report, status: { ...report.status, description: redact(report.status.description) } }
    : { ...report, deployment: { ...report.deployment, description: redact(report.deployment.description) } };
}

export function statusReports(statuses: CommitStatus[]): Report[] {
  return statuses.map((status) => ({ kind: "status", status }));
}

type Facts = Omit<DeploymentFacts, "hosts">;

/** As the rollout starts: pending on the commit and on each host that changes, the commits it supersedes, the GitHub deployment in progress. */
export function startReports(facts: Facts, changing: string[], superseded: string[] = []): Report[] {
  const statuses = startStatuses(facts, changing);
  return [
    ...statusReports([
      ...statuses,
      ...superseded.map((sha) => supersededStatus(facts.environment, sha, facts.sourceCommit, facts.targetUrl)),
    ]),
    deploymentReport(facts, "in_progress", statuses[0]!.description),
  ];
}

/** When it is recorded: every host's final status, then the environment's, then the GitHub deployment's (finalStatuses keeps that order). */
export function finalReports(facts: DeploymentFacts): Report[] {
  const statuses = finalStatuses(facts);
  const environment = statuses.at(-1)!;
  return [...statusReports(statuses), deploymentReport(facts, DEPLOYMENT_STATE[environment.state], environment.description)];
}

/** A deployment that stopped on an error before it was recorded (the CLI's; the operator's job is retried instead). */
export function abortedReports(facts: Facts, reason: string): Report[] {
  const status = abortedStatus(facts.environment, facts.sourceCommit, reason, facts.targetUrl);
  return [...statusReports([status]), deploymentReport(facts, "error", status.description)];
}

const DEPLOYMENT_STATE: Record<CommitStatus["state"], GitHubDeploymentState> = {
  pending: "in_progress",
  success: "success",
  failure: "failure",
  error: "error",
};

function deploymentReport(facts: Facts, state: GitHubDeploymentState, description: string): Report {
  return {
    kind: "deployment",
    deployment: {
      id: facts.id,
      environment: facts.environment,
      sha: facts.sourceCommit,
      state,
      description,
      ...(facts.targetUrl ? { targetUrl: facts.targetUrl } : {}),
    },
  };
}
