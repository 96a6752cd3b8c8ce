import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Octokit } from "@octokit/rest";
import { Webhooks } from "@octokit/webhooks";
import { beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import type { ForgeClient } from "../bed/forge/client.js";
import { run, waitFor } from "../bed/proc.js";
import { Receiver } from "../bed/receiver.js";
import { WorkRepo } from "../bed/work-repo.js";
import { integrationLifecycle } from "../helpers/lifecycle.js";

interface PullPayload {
  action: string;
  number: number;
  before?: string;
  after?: string;
  pull_request: {
    state: string;
    commits: number;
    changed_files: number;
    additions: number;
    head: { label: string; ref: string; sha: string; repo: { full_name: string; fork: boolean } };
    base: { label: string; ref: string; sha: string; repo: { full_name: string } };
  };
  repository: { full_name: string };
}

// The failures here are on purpose; Octokit need not log them.
const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

describe("pull requests on the local forge", () => {
  let bed: TestBed;
  let forge: ForgeClient;
  let receiver: Receiver;
  let work: WorkRepo;
  let fork: WorkRepo;
  let main: string;
  const FORK = "contributor/fleet";

  const owned = integrationLifecycle({ forge: () => forge });

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ forge: true }), (it) => it.down());
    forge = bed.forge!;
    receiver = owned.own(await Receiver.start(), (it) => it.close());
    await forge.addHook(bed.forgeRepo, { url: receiver.url, secret: bed.webhookSecret, events: ["pull_request"] });
    work = owned.own(await WorkRepo.create(forge.pushUrl(bed.forgeRepo)), (it) => it.remove());
    main = await work.commit({ "clusters/staging/web01/nginx/nginx.conf": "worker_processes 1;\n" }, "first");
    await work.push("main");
    await forge.createRepo("contributor", "fleet");
    fork = owned.own(await WorkRepo.create(forge.pushUrl(FORK)), (it) => it.remove());
    await fork.git("fetch", "--quiet", forge.cloneUrl(bed.forgeRepo), "main");
    await fork.git("checkout", "--quiet", "-b", "fix", "FETCH_HEAD");
  });

  /** The pull_request deliveries the receiver got, signatures checked like a receiver must. */
  async function received(count: number): Promise<PullPayload[]> {
    const deliveries = await waitFor(`${count} pull_request webhooks`, () => receiver.received.length >= count && receiver.received);
    const verifier = new Webhooks({ secret: bed.webhookSecret });
    for (const delivery of deliveries) {
      expect(delivery.headers["x-github-event"]).toBe("pull_request");
      expect(await verifier.verify(delivery.body, String(delivery.headers["x-hub-signature-256"]))).toBe(true);
    }
    return deliveries.map((delivery) => JSON.parse(delivery.body) as PullPayload);
  }

  /** Fetches a ref of the base repository into an empty repository with native git; returns the commit it got. */
  async function fetchRef(ref: string): Promise<string> {
    const dir = mkdtempSync(join(tmpdir(), "tidemark-pull-"));
    try {
      await run("git", ["init", "--quiet", dir]);
      await run("git", ["-C", dir, "fetch", "--quiet", forge.cloneUrl(bed.forgeRepo), ref]);
      return (await run("git", ["-C", dir, "rev-parse", "FETCH_HEAD"])).stdout.trim();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  async function lsRemote(): Promise<string> {
    return (await run("git", ["ls-remote", forge.cloneUrl(bed.forgeRepo)])).stdout;
  }

  it("opens one from a branch: refs/pull/1/head over smart HTTP, and a signed opened webhook", async () => {
    await work.git("checkout", "--quiet", "-b", "feature");
    const head = await work.commit(
      { "clusters/staging/web01/nginx/nginx.conf": "worker_processes 2;\n", "clusters/staging/web01/app.env": "A=1\n" },
      "feature",
    );
    await work.push("feature");

    const opened = await forge.openPullRequest(bed.forgeRepo, { head: "feature", title: "More workers" });
    expect(opened).toMatchObject({ number: 1, headSha: head, deliveries: [{ event: "pull_request", status: 200 }] });
    const [payload] = await received(1);
    expect(payload).toMatchObject({
      action: "opened",
      number: 1,
      repository: { full_name: "acme/fleet" },
      pull_request: {
        state: "open",
        commits: 1,
        changed_files: 2,
        additions: 2,
        head: { label: "acme:feature", ref: "feature", sha: head, repo: { full_name: "acme/fleet", fork: false } },
        base: { label: "acme:main", ref: "main", sha: main },
      },
    });
    expect(await lsRemote()).toContain(`${head}\trefs/pull/1/head`);
  });

  it("serves refs/pull/N/head to a native git fetch", async () => {
    expect(await fetchRef("refs/pull/1/head")).toBe(await work.head());
  });

  it("sends synchronize with before and after once the head branch moves", async () => {
    const before = await work.head();
    const after = await work.commit({ "clusters/staging/web01/app.env": "A=2\n" }, "more");
    await work.push("feature");
    const synced = await forge.synchronizePullRequest(bed.forgeRepo, 1);
    expect(synced).toMatchObject({ number: 1, headSha: after });
    expect((await received(2))[1]).toMatchObject({
      action: "synchronize",
      before,
      after,
      pull_request: { commits: 2, head: { sha: after } },
    });
    expect(await lsRemote()).toContain(`${after}\trefs/pull/1/head`);
    // GitHub sends synchronize only for a head that moved.
    await expect(forge.synchronizePullRequest(bed.forgeRepo, 1)).rejects.toThrow(/still at/);
  });

  it("opens one from a fork: the fork's commit is fetched into the base repository", async () => {
    const head = await fork.commit({ "clusters/staging/web01/nginx/nginx.conf": "worker_processes 4;\n" }, "from a fork");
    await fork.push("fix");
    const opened = await forge.openPullRequest(bed.forgeRepo, { head: "fix", headRepo: FORK });
    expect(opened).toMatchObject({ number: 2, headSha: head });
    expect((await received(3))[2]).toMatchObject({
      action: "opened",
      number: 2,
      pull_request: {
        head: { label: "contributor:fix", ref: "fix", sha: head, repo: { full_name: FORK, fork: true } },
        base: { ref: "main", repo: { full_name: "acme/fleet" } },
      },
    });
    expect(await lsRemote()).toContain(`${head}\trefs/pull/2/head`);
    expect(await fetchRef("refs/pull/2/head")).toBe(head);
  });

  it("closes and reopens, and refuses what GitHub would not do", async () => {
    await expect(forge.reopenPullRequest(bed.forgeRepo, 2)).rejects.toThrow(/is open/);
    await forge.closePullRequest(bed.forgeRepo, 2);
    const reopened = await forge.reopenPullRequest(bed.forgeRepo, 2);
    expect(reopened.deliveries.map((d) => (d.payload as PullPayload).action)).toEqual(["reopened"]);
    expect((await received(5)).map((p) => p.action).slice(3)).toEqual(["closed", "reopened"]);
    await expect(forge.openPullRequest(bed.forgeRepo, { head: "main" })).rejects.toThrow(/No commits between main and main/);
    await expect(forge.synchronizePullRequest(bed.forgeRepo, 9)).rejects.toThrow(/no pull request #9/);
  });

  it("answers GET /repos/{owner}/{repo}/pulls/{pull_number} as GitHub does", async () => {
    const octokit = new Octokit({ baseUrl: forge.apiUrl, auth: forge.token, request: { retries: 0 }, log: quiet });
    const { data } = await octokit.pulls.get({ owner: "acme", repo: "fleet", pull_number: 2 });
    expect(data).toMatchObject({
      number: 2,
      state: "open",
      head: { ref: "fix", sha: await fork.head(), repo: { full_name: FORK } },
      base: { ref: "main" },
    });
    await expect(octokit.pulls.get({ owner: "acme", repo: "fleet", pull_number: 99 })).rejects.toMatchObject({ status: 404 });
  });

  it("refuses a push to refs/pull/*, as GitHub does", async () => {
    await expect(work.push("HEAD:refs/pull/1/head")).rejects.toThrow(/hidden ref|remote rejected/);
  });
});
