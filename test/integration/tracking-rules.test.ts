import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import git from "isomorphic-git";
import { repoFs } from "../../src/git/atomic-fs.js";
import { SourceMirror } from "../../src/git/mirror.js";
import { resolveTrack } from "../../src/core/track.js";
import { resolveUserRef } from "../../src/pipeline/read-source.js";
import { TestBed } from "../bed/bed.js";
import { WorkRepo } from "../bed/work-repo.js";

describe("tracking rules against the forge", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let cache: string;
  let mirror: SourceMirror;

  beforeAll(async () => {
    bed = await TestBed.up({ forge: true });
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    cache = mkdtempSync(join(tmpdir(), "tidemark-mirrors-"));
    mirror = await SourceMirror.open(bed.forge!.cloneUrl(bed.forgeRepo), cache);
  });

  afterAll(async () => {
    work?.remove();
    rmSync(cache, { recursive: true, force: true });
    await bed?.down();
  });

  async function track(rule: Parameters<typeof resolveTrack>[0]) {
    await mirror.fetch();
    return resolveTrack(rule, await mirror.refs());
  }

  it("shares one fetch between callers that arrive while one runs, and each sees what was pushed before its call", async () => {
    const pushed = await work.commit({ burst: "1" }, "burst");
    await work.push("main");
    const before = (await bed.forge!.fetches())[bed.forgeRepo] ?? 0;
    const first = mirror.fetch();
    const burst = Array.from({ length: 10 }, () => mirror.fetch());
    await Promise.all([first, ...burst]);
    // The one running, and one more shared by the ten that came while it ran.
    expect(((await bed.forge!.fetches())[bed.forgeRepo] ?? 0) - before).toBe(2);
    expect((await mirror.refs()).branches.get("main")).toBe(pushed);
  });

  it("follows a pin as it is moved, force-moved and deleted", async () => {
    const one = await work.commit({ a: "1" }, "one");
    await work.tag("production", { annotated: true });
    await work.push("main", "production");
    expect(await track({ tag: "production" })).toEqual({ ref: "refs/tags/production", commit: one });

    const two = await work.commit({ a: "2" }, "two");
    await work.tag("production", { force: true });
    await work.push("main", "--force", "production");
    expect(await track({ tag: "production" })).toEqual({ ref: "refs/tags/production", commit: two });

    // Moved back to an older commit: the pin wins, not recency.
    await work.tag("production", { force: true, at: one });
    await work.push("--force", "production");
    expect(await track({ tag: "production" })).toEqual({ ref: "refs/tags/production", commit: one });

    await work.push("--delete", "production");
    expect(await track({ tag: "production" })).toMatchObject({
      ref: null,
      reason: expect.stringContaining("tag production does not exist") as string,
    });
  });

  it("takes the newest tag by semver: v1.10.0 over v1.9.3, pre-releases only when asked", async () => {
    const commits: Record<string, string> = {};
    for (const version of ["v1.9.3", "v1.10.0", "v1.2.0", "v2.0.0-rc.1"]) {
      commits[version] = await work.commit({ version: version }, version);
      await work.tag(version);
    }
    await work.push("main", "--tags");
    expect(await track({ tags: "v*", prerelease: false })).toEqual({ ref: "refs/tags/v1.10.0", commit: commits["v1.10.0"] });
    expect(await track({ tags: "v*", prerelease: true })).toEqual({ ref: "refs/tags/v2.0.0-rc.1", commit: commits["v2.0.0-rc.1"] });
    expect(await track({ tags: "v1.9.*", prerelease: false })).toEqual({ ref: "refs/tags/v1.9.3", commit: commits["v1.9.3"] });
  });

  it("keeps a branch and a tag of the same name apart", async () => {
    const onBranch = await work.commit({ b: "branch" }, "branch side");
    await work.push("main:refs/heads/release");
    const tagged = await work.commit({ b: "tag" }, "tag side");
    await work.tag("release");
    await work.push("release");
    expect(await track({ branch: "release" })).toEqual({ ref: "refs/heads/release", commit: onBranch });
    expect(await track({ tag: "release" })).toEqual({ ref: "refs/tags/release", commit: tagged });
    await expect(resolveUserRef(mirror, "release")).rejects.toMatchObject({ code: "REF_AMBIGUOUS" });
    expect(await resolveUserRef(mirror, "refs/tags/release")).toEqual({ ref: "refs/tags/release", commit: tagged });
  });

  it("heals a mirror whose fetch was cut after its refs were written but before their objects arrived (isomorphic-git only claims objects it has)", async () => {
    await mirror.fetch();
    const next = await work.commit({ c: "after the cut" }, "after the cut");
    await work.push("main");
    // What a fetch killed between writing refs and writing the pack leaves behind (isomorphic-git#2435).
    await git.writeRef({ fs: repoFs(mirror.gitdir), gitdir: mirror.gitdir, ref: "refs/remotes/origin/main", value: next, force: true });
    await mirror.fetch();
    expect((await mirror.refs()).branches.get("main")).toBe(next);
    expect((await mirror.reader.entries(await mirror.reader.commitTree(next))).map((entry) => entry.name)).toContain("c");
  });
});
