import { RequestError } from "@octokit/request-error";
import type { Report } from "../core/reports.js";
import type { GitHubOctokit, GitHubRepo, ReportLog } from "./client.js";

/** Where the GitHub deployment made for a Tidemark deployment is remembered: Redis for the operator (OperatorQueues), memory for one CLI run. */
export interface GitHubDeploymentIds {
  gitHubDeployment(id: string): Promise<number | undefined>;
  setGitHubDeployment(id: string, gitHubId: number): Promise<void>;
}

/** For one process: the CLI posts a deployment's reports itself, from start to end. */
export function memoryDeploymentIds(): GitHubDeploymentIds {
  const ids = new Map<string, number>();
  return {
    gitHubDeployment: (id) => Promise.resolve(ids.get(id)),
    setGitHubDeployment: (id, gitHubId) => {
      ids.set(id, gitHubId);
      return Promise.resolve();
    },
  };
}

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
    private readonly ids: GitHubDeploymentIds,
    private readonly log: ReportLog,
    deployments: boolean,
  ) {
    this.deploymentsAllowed = deployments;
  }

  /** Posts one report; returns what was done, for the job's return value. `signal` abandons the request (the CLI's deadline). */
  async post(report: Report, signal?: AbortSignal): Promise<string> {
    const request = signal ? { request: { signal } } : {};
    if (report.kind === "status") {
      const { sha, context, state, description, targetUrl } = report.status;
      await this.octokit.rest.repos.createCommitStatus({
        ...this.repo,
        sha,
        context,
        state,
        description,
        ...(targetUrl ? { target_url: targetUrl } : {}),
        ...request,
      });
      return `${context} ${state} on ${sha.slice(0, 7)}`;
    }
    if (!this.deploymentsAllowed) return "GitHub Deployments are off";
    const { id, environment, sha, state, description, targetUrl } = report.deployment;
    let gitHubId = await this.ids.gitHubDeployment(id);
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
          ...request,
        });
        gitHubId = (created.data as { id: number }).id;
      } catch (error) {
        // A rate limit is a 403 too: it waits, it does not turn anything off.
        if (error instanceof RequestError && (error.status === 403 || error.status === 404) && rateLimitWait(error) === undefined) {
          this.deploymentsAllowed = false;
          this.log.warn(
            { status: error.status, error: error.message },
            "GitHub Deployments turned off: the token may not create deployments (give it Deployments: write, or set TIDEMARK_GITHUB_DEPLOYMENTS=false)",
          );
          return "GitHub Deployments are off";
        }
        throw error;
      }
      await this.ids.setGitHubDeployment(id, gitHubId);
    }
    // auto_inactive (GitHub's default) marks the environment's earlier deployment inactive on success.
    await this.octokit.rest.repos.createDeploymentStatus({
      ...this.repo,
      deployment_id: gitHubId,
      state,
      description,
      ...(targetUrl ? { log_url: targetUrl } : {}),
      ...request,
    });
    return `deployment ${gitHubId} ${state}`;
  }
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
