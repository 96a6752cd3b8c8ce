import { readFileSync } from "node:fs";
import { createAppAuth } from "@octokit/auth-app";
import { retry } from "@octokit/plugin-retry";
import { throttling } from "@octokit/plugin-throttling";
import { Octokit } from "@octokit/rest";
import Bottleneck from "bottleneck";
import type { ReportingSettings } from "../config/settings.js";
import { TidemarkError } from "../core/errors.js";

const GitHubOctokit = Octokit.plugin(retry, throttling);
export type GitHubOctokit = InstanceType<typeof GitHubOctokit>;

/** Rate limits that end within this are waited out in the request; longer ones pause the report queue instead. */
export const WAIT_IN_REQUEST_SECONDS = 60;

export interface GitHubRepo {
  owner: string;
  repo: string;
}

/** Where reporting says what went wrong: pino's logger in the operator, stderr lines in the CLI. */
export interface ReportLog {
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

/**
 * How requests meet failures. `queued` (the operator, whose report queue
 * tries again for hours): 5xx are retried in the request and rate limits
 * under a minute waited out in it. `direct` (the CLI, with a person waiting
 * on a deadline): neither; the caller retries within its own time.
 */
export type ClientMode = "queued" | "direct";

/**
 * Octokit for reporting, or undefined when no token or App is configured.
 * Retries (5xx, 3 times, backing off) and rate limits (`retry-after`,
 * `x-ratelimit-reset`) are Octokit's own plugins; writes are spaced by
 * githubWriteInterval, as GitHub asks of integrations that post in bursts.
 */
export function gitHubClient(
  settings: ReportingSettings,
  log: ReportLog,
  mode: ClientMode = "queued",
): { octokit: GitHubOctokit; repo: GitHubRepo } | undefined {
  const auth = settings.githubToken
    ? { auth: settings.githubToken }
    : settings.githubAppId !== undefined
      ? {
          authStrategy: createAppAuth,
          auth: {
            appId: settings.githubAppId,
            privateKey: readAppKey(settings.githubAppKey!),
            installationId: settings.githubAppInstallation!,
          },
        }
      : undefined;
  if (!auth) return undefined;
  const waitOnce =
    (kind: string) => (retryAfter: number, options: { method: string; url: string }, _octokit: unknown, retryCount: number) => {
      const wait = mode === "queued" && retryCount === 0 && retryAfter <= WAIT_IN_REQUEST_SECONDS;
      log.warn({ method: options.method, url: options.url, retryAfter, waitingInRequest: wait }, `GitHub ${kind}`);
      return wait;
    };
  const octokit = new GitHubOctokit({
    ...auth,
    baseUrl: settings.githubApiUrl.replace(/\/+$/, ""),
    userAgent: "tidemark",
    log: {
      debug: () => undefined,
      info: () => undefined,
      warn: (message: string) => log.warn({}, message),
      error: (message: string) => log.error({}, message),
    },
    // Rate limits (403, 429) are the throttling plugin's alone: two plugins retrying them would double the requests.
    retry: mode === "queued" ? { doNotRetry: [400, 401, 403, 404, 410, 422, 429, 451] } : { enabled: false },
    throttle: {
      onRateLimit: waitOnce("rate limit reached"),
      onSecondaryRateLimit: waitOnce("secondary rate limit reached"),
      write: new Bottleneck.Group({ maxConcurrent: 1, minTime: settings.githubWriteInterval * 1000 }),
    },
  });
  return { octokit, repo: gitHubRepo(settings) };
}

/** owner/name: TIDEMARK_GITHUB_REPO, or read from the source repo's URL (https://github.com/owner/name.git). */
export function gitHubRepo(settings: Pick<ReportingSettings, "githubRepo" | "repo">): GitHubRepo {
  const named = settings.githubRepo ?? pathOf(settings.repo);
  const match = named ? /^\/?([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+?)(\.git)?\/?$/.exec(named) : null;
  if (!match)
    throw new TidemarkError(
      "GITHUB_REPO_UNKNOWN",
      "cannot tell the GitHub repository from the source repo's URL",
      "set TIDEMARK_GITHUB_REPO=owner/name",
    );
  return { owner: match[1]!, repo: match[2]! };
}

function pathOf(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  try {
    return new URL(url).pathname;
  } catch {
    return undefined;
  }
}

function readAppKey(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new TidemarkError(
      "GITHUB_APP_KEY",
      `cannot read the GitHub App's private key at ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      "set TIDEMARK_GITHUB_APP_KEY to the .pem file GitHub gave you, readable by the operator",
      { cause: error },
    );
  }
}
