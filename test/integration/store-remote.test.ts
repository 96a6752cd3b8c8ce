import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import git from "isomorphic-git";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoFs } from "../../src/git/atomic-fs.js";
import { SourceMirror } from "../../src/git/mirror.js";
import type { HostOutcome } from "../../src/core/outcome.js";
import { newDeploymentId, Store } from "../../src/store/store.js";
import { TestBed } from "../bed/bed.js";
import { run } from "../bed/proc.js";
import { tidemark } from "../helpers/run-cli.js";
import { WorkRepo } from "../bed/work-repo.js";

describe("a store shared through a git remote on the forge", () => {
  let bed: TestBed;
  let remote: string;
  let remoteDir: string;
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), "tidemark-shared-"));
    dirs.push(dir);
    return dir;
  };
  const openStore = async () => Store.open(join(tempDir(), "store.git"), { remote });

  /** Records an attempt whose tree says which deployment it was, so trees differ. */
  async function record(store: Store, hosts: HostOutcome[]): Promise<string> {
    const id = newDeploymentId();
    const fs = repoFs(store.gitdir);
    const blob = await git.writeBlob({ fs, gitdir: store.gitdir, blob: Buffer.from(`${id}\n`) });
    const app = await git.writeTree({ fs, gitdir: store.gitdir, tree: [{ mode: "100644", path: "release", oid: blob, type: "blob" }] });
    const host = await git.writeTree({ fs, gitdir: store.gitdir, tree: [{ mode: "040000", path: "app", oid: app, type: "tree" }] });
    const root = await git.writeTree({
      fs,
      gitdir: store.gitdir,
      tree: hosts.map((h) => ({ mode: "040000", path: h.host, oid: host, type: "tree" as const })),
    });
    await store.record(
      {
        id,
        environment: "staging",
        sourceRepo: "http://127.0.0.1/acme/fleet.git",
        sourceCommit: blob,
        sourceRef: "refs/heads/main",
        trigger: "cli",
        hosts,
      },
      root,
    );
    return id;
  }
  const ids = async (store: Store) => (await store.history("staging")).map((entry) => entry.id);

  beforeAll(async () => {
    bed = await TestBed.up({ forge: true });
    remoteDir = (await bed.forge!.createRepo("acme", "tidemark-store", { private: true })).gitDir;
    remote = bed.forge!.pushUrl("acme/tidemark-store");
  });

  afterAll(async () => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    await bed?.down();
  });

  it("shares attempts between workers, replays concurrent ones on top, and keeps host refs right", async () => {
    const [a, b] = [await openStore(), await openStore()];
    const first = await record(a, [{ host: "web01", outcome: "deployed" }]);
    await a.sync("staging");
    await b.sync("staging");
    expect(await ids(b)).toEqual([first]);
    const web01 = async (store: Store) => (await store.liveHosts("staging")).get("web01")?.tree;
    expect(await web01(b)).toBe(await web01(a));

    // Both record before either shares: the second to push replays its attempt on top of the first's.
    const fromA = await record(a, [{ host: "web01", outcome: "deployed" }]);
    const fromB = await record(b, [
      { host: "web01", outcome: "rolled-back", detail: "app.service failed" },
      { host: "web02", outcome: "deployed" },
    ]);
    await Promise.all([a.sync("staging"), b.sync("staging")]);
    await a.sync("staging");
    await b.sync("staging");

    const history = await ids(a);
    expect(history).toEqual(await ids(b));
    expect(new Set(history)).toEqual(new Set([first, fromA, fromB]));
    expect(history.at(-1)).toBe(first);
    // web01 rolled back in B's attempt, so what is live there is A's; web02 is B's, wherever it landed.
    for (const store of [a, b]) {
      const entries = await store.history("staging");
      const live01 = await store.resolve("refs/tidemark/hosts/staging/web01");
      const live02 = await store.resolve("refs/tidemark/hosts/staging/web02");
      expect(entries.find((entry) => entry.commit === live01)?.id).toBe(fromA);
      expect(entries.find((entry) => entry.commit === live02)?.id).toBe(fromB);
    }
    const fsck = await run("git", ["--git-dir", remoteDir, "fsck", "--no-dangling"], { allowFailure: true });
    expect(fsck.code, fsck.stderr).toBe(0);
  });

  it("keeps attempts made while the remote is down and shares them once it is back", async () => {
    const a = await openStore();
    await a.sync("staging");
    await bed.forge!.setGitAvailable(false);
    const offline = await record(a, [{ host: "web03", outcome: "deployed" }]);
    try {
      await expect(a.sync("staging")).rejects.toMatchObject({
        code: "STORE_REMOTE_UNREACHABLE",
        hint: expect.stringContaining("shared at the next sync") as string,
      });
    } finally {
      await bed.forge!.setGitAvailable(true);
    }
    await a.sync("staging");
    const b = await openStore();
    await b.sync("staging");
    expect((await ids(b))[0]).toBe(offline);
  });

  it("lets the CLI read another worker's history through TIDEMARK_STORE_REMOTE, and exits 4 when the remote is down", async () => {
    const a = await openStore();
    const id = await record(a, [{ host: "web04", outcome: "deployed" }]);
    await a.sync("staging");
    const env = { TIDEMARK_STORE: join(tempDir(), "store.git"), TIDEMARK_STORE_REMOTE: remote };
    const history = await tidemark(["history", "staging", "--json"], env);
    expect(history.code, history.stderr).toBe(0);
    expect((JSON.parse(history.stdout) as Array<{ id: string }>)[0]?.id).toBe(id);
    expect(history.stdout + history.stderr).not.toContain(bed.forge!.token);

    await bed.forge!.setGitAvailable(false);
    try {
      const down = await tidemark(["status", "staging"], env);
      expect(down.code).toBe(4);
      expect(down.stderr).toContain("could not fetch from the store remote");
      expect(down.stderr).not.toContain(bed.forge!.token);
    } finally {
      await bed.forge!.setGitAvailable(true);
    }
  });

  it("refuses a store remote without its credentials, saying what to check", async () => {
    const store = await Store.open(join(tempDir(), "store.git"), { remote: bed.forge!.cloneUrl("acme/tidemark-store") });
    await expect(store.sync("staging")).rejects.toMatchObject({
      code: "STORE_REMOTE_UNREACHABLE",
      message: expect.stringContaining("asks for credentials") as string,
    });
  });

  it("fetches a private source repo with the credentials in its URL, and says so without them", async () => {
    await bed.forge!.createRepo("acme", "private-fleet", { private: true });
    const work = await WorkRepo.create(bed.forge!.pushUrl("acme/private-fleet"));
    try {
      const commit = await work.commit({ "tidemark.yaml": "hosts: {}\n" }, "first");
      await work.push("main");
      const withToken = await SourceMirror.open(bed.forge!.pushUrl("acme/private-fleet"), tempDir());
      await withToken.fetch();
      expect((await withToken.refs()).branches.get("main")).toBe(commit);
      // The token never lands in the mirror's config.
      expect(await git.getConfig({ fs: repoFs(withToken.gitdir), gitdir: withToken.gitdir, path: "remote.origin.url" })).not.toContain(
        bed.forge!.token,
      );

      const without = await SourceMirror.open(bed.forge!.cloneUrl("acme/private-fleet"), tempDir());
      await expect(without.fetch()).rejects.toMatchObject({
        code: "REPO_UNREACHABLE",
        hint: expect.stringContaining("credentials") as string,
      });
    } finally {
      work.remove();
    }
  });
});
