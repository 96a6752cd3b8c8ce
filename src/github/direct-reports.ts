import { setTimeout as sleep } from "node:timers/promises";
import { RequestError } from "@octokit/request-error";
import type { ReportingSettings } from "../config/settings.js";
import { describeError } from "../core/errors.js";
import { reportKey, type Report } from "../core/reports.js";
import { gitHubClient, type ReportLog } from "./client.js";
import { GitHubReporter, memoryDeploymentIds, rateLimitWait } from "./reporter.js";

/** A report that did not reach GitHub, and why. */
export interface Unposted {
  report: Report;
  reason: string;
}

/** What posts one report: GitHubReporter, or a stand-in in tests. */
export interface PostReport {
  post(report: Report, signal?: AbortSignal): Promise<unknown>;
}

/** Waits between tries of a report GitHub answered with a 5xx or not at all; the last one repeats. */
const BACKOFF_MS = [1000, 2000, 4000, 8000];

/**
 * Posts reports straight to GitHub, for a process without Redis (`tidemark
 * deploy` and `rollback`), with the operator's ordering: batches one after
 * the other, each in its order, and a report that fails is tried again
 * (backing off, or waiting out a rate limit) while the rest of its batch
 * waits behind it, so a deployment's `tidemark/<env>` never overtakes a host's
 * status. A report for which a newer one of the same status is queued is
 * skipped: it would only be overwritten. Posting goes on in the background
 * while the deployment runs; `finish` sets the deadline.
 */
export class DirectReports {
  private chain: Promise<void> = Promise.resolve();
  private seq = 0;
  private readonly newest = new Map<string, number>();
  private readonly unposted: Unposted[] = [];
  private readonly giveUp = new AbortController();
  private deadline: number | undefined;

  constructor(
    private readonly poster: PostReport,
    private readonly backoffMs = BACKOFF_MS,
  ) {}

  send(reports: Report[]): void {
    const batch = reports.map((report) => ({ report, seq: ++this.seq }));
    for (const { report, seq } of batch) this.newest.set(reportKey(report), seq);
    this.chain = this.chain.then(() => this.postBatch(batch));
  }

  /** Waits for everything sent, at most `timeoutMs`; returns what was not posted (given up at the deadline, or refused by GitHub). */
  async finish(timeoutMs: number): Promise<Unposted[]> {
    this.deadline = Date.now() + timeoutMs;
    const timer = setTimeout(() => this.giveUp.abort(), timeoutMs);
    try {
      await this.chain;
    } finally {
      clearTimeout(timer);
    }
    return this.unposted;
  }

  private async postBatch(batch: Array<{ report: Report; seq: number }>): Promise<void> {
    const current = ({ report, seq }: { report: Report; seq: number }) => this.newest.get(reportKey(report)) === seq;
    for (const [i, entry] of batch.entries()) {
      const failure = await this.postOne(entry.report, () => current(entry));
      if (failure === undefined) continue;
      this.unposted.push(
        { report: entry.report, reason: failure },
        ...batch
          .slice(i + 1)
          .filter(current)
          .map(({ report }) => ({ report, reason: "waits behind a report that was not posted" })),
      );
      return;
    }
  }

  /** Undefined once posted, or once a newer report of the same status is queued (it says what this one would have); otherwise why not. */
  private async postOne(report: Report, current: () => boolean): Promise<string | undefined> {
    for (let attempt = 0; ; attempt++) {
      if (!current()) return undefined;
      if (this.giveUp.signal.aborted) return "not tried before the deadline";
      try {
        await this.poster.post(report, this.giveUp.signal);
        return undefined;
      } catch (error) {
        const reason = describeError(error);
        if (this.giveUp.signal.aborted) return current() ? `${reason} (given up at the deadline)` : undefined;
        const wait = rateLimitWait(error) ?? (transient(error) ? this.backoffMs[Math.min(attempt, this.backoffMs.length - 1)]! : undefined);
        if (wait === undefined) return reason;
        if (this.deadline !== undefined && Date.now() + wait > this.deadline) return `${reason} (the next try would be past the deadline)`;
        const waited = await sleep(wait, true, { signal: this.giveUp.signal }).catch(() => false);
        if (!waited) return current() ? `${reason} (given up at the deadline)` : undefined;
      }
    }
  }
}

/** Worth another try: a 5xx, or no answer at all. Any other 4xx than a rate limit says the request itself is refused. */
function transient(error: unknown): boolean {
  return !(error instanceof RequestError) || error.status >= 500;
}

/** Reports for `tidemark deploy` and `rollback`: a client that leaves retrying to DirectReports, and GitHub deployment ids kept in memory. */
export function directReports(settings: ReportingSettings, log: ReportLog): DirectReports {
  const github = gitHubClient(settings, log, "direct");
  if (!github) throw new Error("directReports needs a GitHub token or App");
  return new DirectReports(new GitHubReporter(github.octokit, github.repo, memoryDeploymentIds(), log, settings.githubDeployments));
}
