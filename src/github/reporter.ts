import { RequestError } from "@octokit/request-error";
import type { Logger } from "pino";
import type { OperatorQueues, Report } from "../queue/queues.js";
import type { GitHubOctokit, GitHubRepo } from "./client.js";

/**
 * Posts reports to GitHub: commit statuses, and Deployments with their
 * statuses so that GitHub's Environments view shows what runs where. A token
 * that may not write Deployments turns them off with one warning; statuses go on.
 */
export class GitHubReporter {
  private deploymentsAllowed: boolean;

  constructor(
    private readonly octokit: GitHubOctokit,
    private readonly repo: GitHubRepo,
    private readonly queues: OperatorQueues,
    private readonly log: Logger,
    deployments: boolean,
  ) {
    this.deploymentsAllowed = deployments;
  }

  /** Posts one report; returns what was done, for the job's return value. */
  async post(report: Report): Promise<string> {
    if (report.kind === "status") {
      const { sha, context, state, description, targetUrl } = report.status;
      await this.octokit.rest.repos.createCommitStatus({ ...this.repo, sha, context, state, description, ...(targetUrl ? { target_url: targetUrl } : {}) });
      return `${context} ${state} on ${sha.slice(0, 7)}`;
    }
    if (!this.deploymentsAllowed) return "GitHub Deployments are off";
    const { id, environment, sha, state, description, targetUrl } = report.deployment;
    let gitHubId = await this.queues.gitHubDeployment(id);
    if (gitHubId === undefined) {
      try {
        const created = await this.octokit.rest.repos.createDeployment({
          ...this.repo,
          ref: sha,
          environment,
          description: `Tidemark deployment ${id}`,
          payload: { tidemark: id },
          // Tidemark's own pending statuses are on this commit: GitHub would refuse the deployment over them.
          required_contexts: [],
          auto_merge: false,
        });
        gitHubId = (created.data as { id: number }).id;
      } catch (error) {
        if (error instanceof RequestError && (error.status === 403 || error.status === 404)) {
          this.deploymentsAllowed = false;
          this.log.warn({ status: error.status, error: error.message }, "GitHub Deployments turned off: the token may not create deployments (give it Deployments: write, or set TIDEMARK_GITHUB_DEPLOYMENTS=false)");
          return "GitHub Deployments are off";
        }
        throw error;
      }
      await this.queues.setGitHubDeployment(id, gitHubId);
    }
    // auto_inactive (GitHub's default) marks the environment's earlier deployment inactive on success.
    await this.octokit.rest.repos.createDeploymentStatus({ ...this.repo, deployment_id: gitHubId, state, description, ...(targetUrl ? { log_url: targetUrl } : {}) });
    return `deployment ${gitHubId} ${state}`;
  }
}

/** The key under which reports are ordered: one commit status context, or one deployment. */
export function reportKey(report: Report): string {
  return report.kind === "status" ? `status:${report.status.sha}:${report.status.context}` : `deployment:${report.deployment.id}`;
}

/** How long GitHub asked us to wait, in ms, when the error is a rate limit; undefined otherwise. */
export function rateLimitWait(error: unknown, now = Date.now()): number | undefined {
  if (!(error instanceof RequestError) || (error.status !== 403 && error.status !== 429)) return undefined;
  const headers = error.response?.headers ?? {};
  const retryAfter = Number(headers["retry-after"]);
  if (retryAfter > 0) return retryAfter * 1000;
  if (headers["x-ratelimit-remaining"] === "0") return Math.max(1000, Number(headers["x-ratelimit-reset"]) * 1000 - now + 1000);
  return undefined;
}
