import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Webhooks } from "@octokit/webhooks";
import * as fs from "node:fs";
import git from "isomorphic-git";
import http from "isomorphic-git/http/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import { waitFor } from "../bed/proc.js";
import { Receiver } from "../bed/receiver.js";
import { WorkRepo } from "../bed/work-repo.js";

interface PushPayload {
  ref: string;
  before: string;
  after: string;
  created: boolean;
  deleted: boolean;
  forced: boolean;
  head_commit: { id: string; added: string[] } | null;
  commits: Array<{ id: string }>;
  repository: { full_name: string; clone_url: string };
}

describe("the local forge", () => {
  let bed: TestBed;
  let receiver: Receiver;
  let work: WorkRepo;

  beforeAll(async () => {
    bed = await TestBed.up({ forge: true });
    receiver = await Receiver.start();
    await bed.forge!.addHook(bed.forgeRepo, { url: receiver.url, secret: bed.webhookSecret });
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
  });

  afterAll(async () => {
    work?.remove();
    await receiver?.close();
    await bed?.down();
  });

  /** The push deliveries for a ref after `count` earlier ones, signature checked like a receiver must. */
  async function nextPush(ref: string, seen: number): Promise<PushPayload> {
    const deliveries = await waitFor(`a push webhook for ${ref}`, () => {
      const found = receiver.received.filter((r) => (JSON.parse(r.body) as PushPayload).ref === ref);
      return found.length > seen && found;
    });
    const delivery = deliveries[seen]!;
    expect(delivery.headers["x-github-event"]).toBe("push");
    expect(delivery.headers["x-github-delivery"]).toMatch(/^[0-9a-f-]{36}$/);
    const signature = String(delivery.headers["x-hub-signature-256"]);
    expect(await new Webhooks({ secret: bed.webhookSecret }).verify(delivery.body, signature)).toBe(true);
    expect(await new Webhooks({ secret: "not-the-secret" }).verify(delivery.body, signature)).toBe(false);
    return JSON.parse(delivery.body) as PushPayload;
  }

  it("sends a signed push webhook for a pushed branch, with the commits it brought", async () => {
    const first = await work.commit({ "clusters/staging/web01/nginx/nginx.conf": "worker_processes 1;\n" }, "first");
    await work.push("main");
    const push = await nextPush("refs/heads/main", 0);
    expect(push).toMatchObject({ after: first, created: true, deleted: false, forced: false, repository: { full_name: "acme/fleet" } });
    expect(push.head_commit).toMatchObject({ id: first, added: ["clusters/staging/web01/nginx/nginx.conf"] });
    expect(push.commits.map((c) => c.id)).toEqual([first]);
  });

  it("sends one for a pushed tag, a force-moved tag and a deleted tag", async () => {
    const tagged = await work.head();
    await work.tag("v1.0.0", { annotated: true });
    await work.push("v1.0.0");
    const created = await nextPush("refs/tags/v1.0.0", 0);
    expect(created).toMatchObject({ created: true, deleted: false, commits: [] });
    expect(created.head_commit?.id).toBe(tagged); // peeled through the annotated tag

    const moved = await work.commit({ "clusters/staging/web01/nginx/nginx.conf": "worker_processes 2;\n" }, "second");
    await work.tag("v1.0.0", { force: true });
    await work.push("--force", "v1.0.0");
    const forced = await nextPush("refs/tags/v1.0.0", 1);
    expect(forced).toMatchObject({ after: moved, created: false, deleted: false, forced: true });

    await work.push("--delete", "v1.0.0");
    const deleted = await nextPush("refs/tags/v1.0.0", 2);
    expect(deleted).toMatchObject({ after: "0".repeat(40), deleted: true, head_commit: null });
  });

  it("serves clone and fetch over smart HTTP to isomorphic-git", async () => {
    await work.push("main");
    const dir = mkdtempSync(join(tmpdir(), "tidemark-iso-"));
    try {
      await git.clone({
        fs,
        http,
        dir,
        gitdir: join(dir, ".git"),
        url: bed.forge!.cloneUrl(bed.forgeRepo),
        singleBranch: true,
        noCheckout: true,
      });
      expect(await git.resolveRef({ fs, gitdir: join(dir, ".git"), ref: "refs/remotes/origin/main" })).toBe(await work.head());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a push without the forge's credentials", async () => {
    const anonymous = await WorkRepo.create(bed.forge!.cloneUrl(bed.forgeRepo));
    try {
      await anonymous.commit({ x: "y" });
      await expect(anonymous.push("HEAD:refs/heads/anonymous")).rejects.toThrow(/Authentication|401|could not read Username/);
    } finally {
      anonymous.remove();
    }
  });
});
