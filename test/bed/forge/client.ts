import type { AppCredentials } from "./apps.js";
import type { ApiRequest, Violation } from "./github-api.js";
import type { Fault } from "./faults.js";
import type { Delivery, Hook } from "./webhooks.js";

export interface RepoInfo {
  id: number;
  owner: string;
  name: string;
  fullName: string;
  defaultBranch: string;
  cloneUrl: string;
  /** The bare repository on disk, for checks with native git. */
  gitDir: string;
}

/** What a pull request event did: the pull request's number, the commit refs/pull/N/head now points at, the webhooks sent. */
export interface PullRequestEvent {
  number: number;
  headSha: string;
  deliveries: Delivery[];
}

export type { AppCredentials };

/** Talks to a running forge: its control API, and the URLs its parts answer on. */
export class ForgeClient {
  constructor(
    readonly url: string,
    readonly token: string,
  ) {}

  /** The REST API base, as Octokit's baseUrl (GitHub Enterprise style). */
  get apiUrl(): string {
    return `${this.url}/api/v3`;
  }

  /** A clone URL that carries the push credentials, for native git in tests. */
  pushUrl(repo: string): string {
    const url = new URL(`${this.url}/${repo}.git`);
    url.username = "tidemark";
    url.password = this.token;
    return url.toString();
  }

  cloneUrl(repo: string): string {
    return `${this.url}/${repo}.git`;
  }

  createRepo(owner: string, name: string, options: { defaultBranch?: string; private?: boolean } = {}): Promise<RepoInfo> {
    return this.call("POST", "/_bed/repos", { owner, name, ...options });
  }

  addHook(repo: string, hook: { url: string; secret: string; events?: string[] }): Promise<Hook> {
    return this.call("POST", "/_bed/hooks", { repo, ...hook });
  }

  /** Every webhook delivery so far, once the ones in flight have finished. */
  deliveries(): Promise<Delivery[]> {
    return this.call("GET", "/_bed/deliveries");
  }

  redeliver(guid: string): Promise<Delivery> {
    return this.call("POST", "/_bed/redeliver", { guid });
  }

  /**
   * Opens a pull request on `repo` ("owner/name") from `head` (a branch of
   * `headRepo`, a fork, or of `repo` itself) into `base` (the default branch
   * unless given), and sends the `pull_request` "opened" webhook.
   */
  openPullRequest(repo: string, pull: { head: string; base?: string; headRepo?: string; title?: string }): Promise<PullRequestEvent> {
    return this.call("POST", "/_bed/pulls", { repo, action: "opened", ...pull });
  }

  /** After a push to the head branch: moves refs/pull/N/head and sends "synchronize" (with before/after). */
  synchronizePullRequest(repo: string, number: number): Promise<PullRequestEvent> {
    return this.call("POST", "/_bed/pulls", { repo, action: "synchronize", number });
  }

  closePullRequest(repo: string, number: number): Promise<PullRequestEvent> {
    return this.call("POST", "/_bed/pulls", { repo, action: "closed", number });
  }

  /** Reopens a closed pull request, at its head branch's current commit, and sends "reopened". */
  reopenPullRequest(repo: string, number: number): Promise<PullRequestEvent> {
    return this.call("POST", "/_bed/pulls", { repo, action: "reopened", number });
  }

  /** Creates a GitHub App installed on `repo` alone, for @octokit/auth-app: { appId, installationId, privateKey }. */
  createApp(repo: string): Promise<AppCredentials> {
    return this.call("POST", "/_bed/apps", { repo });
  }

  apiRequests(): Promise<ApiRequest[]> {
    return this.call("GET", "/_bed/api/requests");
  }

  violations(): Promise<Violation[]> {
    return this.call("GET", "/_bed/api/violations");
  }

  /** Returns the violations recorded so far and forgets them (for tests that cause one on purpose). */
  drainViolations(): Promise<Violation[]> {
    return this.call("POST", "/_bed/api/violations/drain");
  }

  setFaults(faults: Fault[]): Promise<void> {
    return this.call("PUT", "/_bed/api/faults", { faults });
  }

  /** How many fetches (ref advertisements for git-upload-pack) each repository has served. */
  fetches(): Promise<Record<string, number>> {
    return this.call("GET", "/_bed/git/fetches");
  }

  /** Takes git over HTTP down (503) or back up, as when the source repo is unreachable. */
  setGitAvailable(available: boolean): Promise<void> {
    return this.call("PUT", "/_bed/git", { available });
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.url}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`forge ${method} ${path} answered ${response.status}: ${text}`);
    return JSON.parse(text) as T;
  }
}
