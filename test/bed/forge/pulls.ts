import { isoTime, ownerId, repositoryObject, userObject, type Urls } from "./github-objects.js";
import { git, resolveCommit, type ForgeRepo, type Repos } from "./repos.js";

export type PullAction = "opened" | "synchronize" | "closed" | "reopened";

/** What a test asks of the forge: a pull request event, as if someone opened, pushed to, closed or reopened one. */
export interface PullEventRequest {
  /** The base repository, "owner/name". */
  repo: string;
  action: PullAction;
  /** Which pull request, for every action but "opened". */
  number?: number;
  /** For "opened": the base branch (the repository's default branch unless given), the head branch, the fork it lives in. */
  base?: string;
  head?: string;
  headRepo?: string;
  title?: string;
}

interface DiffStats {
  commits: number;
  additions: number;
  deletions: number;
  changed_files: number;
}

export interface PullRecord {
  number: number;
  id: number;
  title: string;
  state: "open" | "closed";
  base: ForgeRepo;
  baseRef: string;
  baseSha: string;
  head: ForgeRepo;
  headRef: string;
  headSha: string;
  stats: DiffStats;
  createdAt: number;
  updatedAt: number;
  closedAt: number | null;
}

/**
 * Pull requests with GitHub's bookkeeping: numbers per base repository,
 * `refs/pull/N/head` in the base repository (a fork's commits fetched into it
 * first, as GitHub's shared object storage has them), and the `pull_request`
 * payload of each event.
 */
export class Pulls {
  private readonly byRepo = new Map<string, PullRecord[]>();
  private nextId = 1_900_000_000;
  /** Events are carried out one at a time, so that numbers and refs never race. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly urls: Urls,
    private readonly repos: Repos,
  ) {}

  get(repo: ForgeRepo, number: number): PullRecord | undefined {
    return this.byRepo.get(repo.fullName)?.find((pull) => pull.number === number);
  }

  /** Carries out the event and returns the `pull_request` payload GitHub would send for it. */
  apply(request: PullEventRequest) {
    const result = this.queue.then(() => this.carryOut(request));
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async carryOut(request: PullEventRequest) {
    const base = this.repos.named(request.repo);
    switch (request.action) {
      case "opened":
        return this.payload("opened", await this.open(base, request));
      case "synchronize": {
        const pull = this.existing(base, request, "open");
        const before = pull.headSha;
        await this.refresh(pull);
        if (pull.headSha === before)
          throw new Error(
            `pull request #${pull.number}: ${pull.headRef} is still at ${before}; GitHub sends synchronize only when the head moves`,
          );
        return this.payload("synchronize", pull, { before, after: pull.headSha });
      }
      case "closed": {
        const pull = this.existing(base, request, "open");
        pull.state = "closed";
        pull.closedAt = pull.updatedAt = now();
        return this.payload("closed", pull);
      }
      case "reopened": {
        const pull = this.existing(base, request, "closed");
        await this.refresh(pull);
        pull.state = "open";
        pull.closedAt = null;
        return this.payload("reopened", pull);
      }
      default:
        throw new Error(`unknown pull request action ${JSON.stringify(request.action)}`);
    }
  }

  /** The pull request object, the same in webhook payloads and in REST answers. */
  object(pull: PullRecord) {
    const api = `${this.urls.api}/repos/${pull.base.fullName}`;
    const url = `${api}/pulls/${pull.number}`;
    const html = `${this.urls.web}/${pull.base.fullName}/pull/${pull.number}`;
    const issue = `${api}/issues/${pull.number}`;
    const statuses = `${api}/statuses/${pull.headSha}`;
    const fork = pull.head !== pull.base;
    return {
      url,
      id: pull.id,
      node_id: Buffer.from(`011:PullRequest${pull.id}`).toString("base64"),
      html_url: html,
      diff_url: `${html}.diff`,
      patch_url: `${html}.patch`,
      issue_url: issue,
      number: pull.number,
      state: pull.state,
      locked: false,
      title: pull.title,
      user: userObject(this.urls, pull.head.owner, ownerId(pull.head.owner)),
      body: null,
      created_at: isoTime(pull.createdAt),
      updated_at: isoTime(pull.updatedAt),
      closed_at: pull.closedAt === null ? null : isoTime(pull.closedAt),
      merged_at: null,
      merge_commit_sha: null,
      assignee: null,
      assignees: [],
      requested_reviewers: [],
      requested_teams: [],
      labels: [],
      milestone: null,
      draft: false,
      commits_url: `${url}/commits`,
      review_comments_url: `${url}/comments`,
      review_comment_url: `${api}/pulls/comments{/number}`,
      comments_url: `${issue}/comments`,
      statuses_url: statuses,
      head: this.side(pull.head, pull.headRef, pull.headSha, fork),
      base: this.side(pull.base, pull.baseRef, pull.baseSha, false),
      _links: {
        self: { href: url },
        html: { href: html },
        issue: { href: issue },
        comments: { href: `${issue}/comments` },
        review_comments: { href: `${url}/comments` },
        review_comment: { href: `${api}/pulls/comments{/number}` },
        commits: { href: `${url}/commits` },
        statuses: { href: statuses },
      },
      author_association: fork ? ("CONTRIBUTOR" as const) : ("OWNER" as const),
      auto_merge: null,
      active_lock_reason: null,
      merged: false,
      // GitHub works mergeability out in the background; its first answers say it does not know yet.
      mergeable: null,
      rebaseable: null,
      mergeable_state: "unknown",
      merged_by: null,
      comments: 0,
      review_comments: 0,
      maintainer_can_modify: fork,
      ...pull.stats,
    };
  }

  /** A pull request's head or base: "owner:branch", as GitHub labels it even when both are in one repository. */
  private side(repo: ForgeRepo, ref: string, sha: string, fork: boolean) {
    return {
      label: `${repo.owner}:${ref}`,
      ref,
      sha,
      user: userObject(this.urls, repo.owner, ownerId(repo.owner)),
      repo: repositoryObject(this.urls, repo, { fork }),
    };
  }

  private async open(base: ForgeRepo, request: PullEventRequest): Promise<PullRecord> {
    if (!request.head) throw new Error("opening a pull request needs its head branch");
    const head = request.headRepo ? this.repos.named(request.headRepo) : base;
    const baseRef = request.base ?? base.defaultBranch;
    const list = this.listOf(base);
    const at = now();
    const pull: PullRecord = {
      number: list.length + 1,
      id: this.nextId++,
      title: request.title ?? `Merge ${request.head} into ${baseRef}`,
      state: "open",
      base,
      baseRef,
      baseSha: "",
      head,
      headRef: request.head,
      headSha: "",
      stats: { commits: 0, additions: 0, deletions: 0, changed_files: 0 },
      createdAt: at,
      updatedAt: at,
      closedAt: null,
    };
    await this.readBranches(pull);
    // GitHub refuses a pull request that would bring nothing.
    if (pull.stats.commits === 0) throw new Error(`No commits between ${baseRef} and ${request.head}`);
    await this.writeRef(pull);
    list.push(pull);
    return pull;
  }

  /** Reads both branches again and points refs/pull/N/head at the head, as GitHub does on every push to it. */
  private async refresh(pull: PullRecord): Promise<void> {
    await this.readBranches(pull);
    await this.writeRef(pull);
  }

  private async readBranches(pull: PullRecord): Promise<void> {
    pull.headSha = await branchTip(pull.head, pull.headRef);
    pull.baseSha = await branchTip(pull.base, pull.baseRef);
    if (pull.head !== pull.base)
      await git(pull.base, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", pull.head.gitDir, pull.headSha);
    pull.stats = await diffStats(pull.base, pull.baseSha, pull.headSha);
    pull.updatedAt = now();
  }

  private async writeRef(pull: PullRecord): Promise<void> {
    await git(pull.base, "update-ref", `refs/pull/${pull.number}/head`, pull.headSha);
  }

  private payload(action: PullAction, pull: PullRecord, sync: { before: string; after: string } | Record<string, never> = {}) {
    return {
      pull,
      payload: {
        action,
        number: pull.number,
        ...sync,
        pull_request: this.object(pull),
        repository: repositoryObject(this.urls, pull.base),
        sender: userObject(this.urls, pull.head.owner, ownerId(pull.head.owner)),
      },
    };
  }

  private existing(base: ForgeRepo, request: PullEventRequest, state: PullRecord["state"]): PullRecord {
    const pull = request.number === undefined ? undefined : this.get(base, request.number);
    if (!pull) throw new Error(`${base.fullName} has no pull request #${request.number}`);
    if (pull.state !== state)
      throw new Error(`pull request #${pull.number} is ${pull.state}; GitHub does not send ${request.action} for it`);
    return pull;
  }

  private listOf(repo: ForgeRepo): PullRecord[] {
    let list = this.byRepo.get(repo.fullName);
    if (!list) this.byRepo.set(repo.fullName, (list = []));
    return list;
  }
}

async function branchTip(repo: ForgeRepo, branch: string): Promise<string> {
  const sha = await resolveCommit(repo, `refs/heads/${branch}`);
  if (!sha) throw new Error(`${repo.fullName} has no branch ${branch}`);
  return sha;
}

/** What GitHub shows on the pull request: commits the head brings, and the diff from the merge base. */
async function diffStats(repo: ForgeRepo, baseSha: string, headSha: string): Promise<DiffStats> {
  const commits = Number((await git(repo, "rev-list", "--count", `${baseSha}..${headSha}`)).trim());
  const files = (await git(repo, "diff", "--numstat", `${baseSha}...${headSha}`)).split("\n").filter(Boolean);
  // Binary files count as changed with no lines ("-\t-\tpath").
  const lines = files.map((line) => line.split("\t").map(Number));
  return {
    commits,
    additions: lines.reduce((sum, [added = 0]) => sum + (Number.isNaN(added) ? 0 : added), 0),
    deletions: lines.reduce((sum, [, deleted = 0]) => sum + (Number.isNaN(deleted) ? 0 : deleted), 0),
    changed_files: files.length,
  };
}

function now(): number {
  return Math.floor(Date.now() / 1000);
}
