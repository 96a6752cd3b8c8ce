import { Octokit } from "@octokit/rest";
import { envContext } from "../../src/core/statuses.js";
import { Store } from "../../src/store/store.js";
import type { TestBed } from "../bed/bed.js";
import { GiveUp, waitFor } from "../bed/proc.js";
import type { HostShell } from "../helpers/host-shell.js";

/** What the campaign reads off a host after the faults: its state files and the version its app runs. */
export interface HostState {
  host: string;
  /** `<deployment id> <tree>` lines of /var/lib/tidemark/target and /current, "-" when absent. */
  target: string;
  current: string;
  /** The first line of `<app>/current/version`, "-" when absent. */
  version: string;
}

export async function hostState(shell: HostShell, host: string, app: string): Promise<HostState> {
  const out = await shell.run(
    host,
    `cat /var/lib/tidemark/target 2>/dev/null || echo -; cat /var/lib/tidemark/current 2>/dev/null || echo -; head -n 1 /var/lib/tidemark/apps/${app}/current/version 2>/dev/null || echo -`,
  );
  const [target = "-", current = "-", version = "-"] = out.split("\n");
  return { host, target, current, version };
}

/** A host whose apply began and never finished: target names another deployment or tree than current. */
export function isHalfSwitched(state: HostState): boolean {
  return state.target.split(" ")[1] !== state.current.split(" ")[1];
}

/**
 * Applies counted from the store: a host given the same source commit by two
 * deployments, each recorded `deployed` (not "already live"), was applied twice.
 */
export async function duplicatedApplies(storePath: string, environments: string[]): Promise<{ duplicated: number; examples: string[] }> {
  const store = await Store.open(storePath);
  const seen = new Map<string, string>();
  const examples: string[] = [];
  for (const environment of environments) {
    for (const entry of await store.history(environment, 100_000)) {
      for (const host of entry.hosts) {
        // "already live on the host": an attempt that found the work done by one that was cut before recording it, not a second apply.
        if (host.outcome !== "deployed" || host.detail?.startsWith("already live on the host")) continue;
        const key = `${environment} ${host.host} ${entry.sourceCommit}`;
        const earlier = seen.get(key);
        if (earlier) examples.push(`${host.host} got ${entry.sourceCommit.slice(0, 7)} in ${earlier} and again in ${entry.id}`);
        else seen.set(key, entry.id);
      }
    }
  }
  return { duplicated: examples.length, examples };
}

const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

export function forgeOctokit(bed: TestBed): Octokit {
  return new Octokit({ baseUrl: bed.forge!.apiUrl, auth: bed.forge!.token, request: { retries: 0 }, log: quiet });
}

/** Waits for the environment's status on a commit to leave `pending`; returns it and when it was seen. */
export async function finalStatus(
  bed: TestBed,
  octokit: Octokit,
  sha: string,
  environment: string,
  timeoutMs: number,
): Promise<{ state: string; description: string; seenAt: number }> {
  const [owner, repo] = bed.forgeRepo.split("/") as [string, string];
  return waitFor(
    `the final ${envContext(environment)} status of ${sha.slice(0, 7)}`,
    async () => {
      const { data } = await octokit.repos.listCommitStatusesForRef({ owner, repo, ref: sha, per_page: 100 });
      const latest = data.find((status) => status.context === envContext(environment));
      if (!latest || latest.state === "pending") return undefined;
      if (latest.description?.startsWith("superseded"))
        throw new GiveUp(`${sha.slice(0, 7)} was superseded on ${environment}: ${latest.description}`);
      return { state: latest.state, description: latest.description ?? "", seenAt: Date.now() };
    },
    { timeoutMs, intervalMs: 100 },
  );
}

/** Every status of the environment's context on a commit, oldest first, as "state: description". */
export async function statusHistory(bed: TestBed, octokit: Octokit, sha: string, environment: string): Promise<string[]> {
  const [owner, repo] = bed.forgeRepo.split("/") as [string, string];
  const { data } = await octokit.repos.listCommitStatusesForRef({ owner, repo, ref: sha, per_page: 100 });
  return data
    .filter((status) => status.context === envContext(environment))
    .reverse()
    .map((status) => `${status.state}: ${status.description ?? ""}`);
}
