import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import git from "isomorphic-git";
import { afterAll, describe, expect, it } from "vitest";
import type { HostOutcome } from "../../src/core/outcome.js";
import { repoFs } from "../../src/git/atomic-fs.js";
import { envRef, newDeploymentId, Store } from "../../src/store/store.js";

const dir = mkdtempSync(join(tmpdir(), "tidemark-store-live-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Records an attempt whose tree gives every host its own release file, so each attempt's trees differ. */
async function record(store: Store, hosts: HostOutcome[]): Promise<string> {
  const fs = repoFs(store.gitdir);
  const id = newDeploymentId();
  const entries = [];
  for (const { host } of hosts) {
    const blob = await git.writeBlob({ fs, gitdir: store.gitdir, blob: Buffer.from(`${id} ${host}\n`) });
    const app = await git.writeTree({ fs, gitdir: store.gitdir, tree: [{ mode: "100644", path: "release", oid: blob, type: "blob" }] });
    const tree = await git.writeTree({ fs, gitdir: store.gitdir, tree: [{ mode: "040000", path: "app", oid: app, type: "tree" }] });
    entries.push({ mode: "040000", path: host, oid: tree, type: "tree" as const });
  }
  const root = await git.writeTree({ fs, gitdir: store.gitdir, tree: entries });
  const source = await git.writeBlob({ fs, gitdir: store.gitdir, blob: Buffer.from(id) });
  const record = {
    id,
    environment: "staging",
    sourceRepo: "http://127.0.0.1/fleet.git",
    sourceCommit: source,
    sourceRef: "refs/heads/main",
  };
  return store.record({ ...record, trigger: "cli", hosts }, root);
}

const live = async (store: Store) =>
  Object.fromEntries([...(await store.liveHosts("staging"))].map(([host, { commit, tree }]) => [host, { commit, tree }]));

describe("what the store says is live on each host", () => {
  it("follows every attempt, its own and those another process records in the same store", async () => {
    const operator = await Store.open(join(dir, "store.git"));
    const cli = await Store.open(join(dir, "store.git"));
    const first = await record(operator, [
      { host: "web01", outcome: "deployed" },
      { host: "web02", outcome: "deployed" },
    ]);
    const treeAt = async (commit: string, host: string) => operator.reader.treeAt(await operator.reader.commitTree(commit), host);
    expect(await live(operator)).toEqual({
      web01: { commit: first, tree: await treeAt(first, "web01") },
      web02: { commit: first, tree: await treeAt(first, "web02") },
    });

    // web01 fails and keeps what it ran: only web02 moves.
    const second = await record(cli, [
      { host: "web01", outcome: "failed", detail: "app.service failed" },
      { host: "web02", outcome: "deployed" },
    ]);
    expect(await live(operator)).toEqual({
      web01: { commit: first, tree: await treeAt(first, "web01") },
      web02: { commit: second, tree: await treeAt(second, "web02") },
    });

    const third = await record(cli, [{ host: "web01", outcome: "deployed" }]);
    expect((await live(operator)).web01).toEqual({ commit: third, tree: await treeAt(third, "web01") });
    expect(await operator.resolve(envRef("staging"))).toBe(third);

    // The operator's own attempt: what it knew, moved as it moved the refs.
    const fourth = await record(operator, [{ host: "web02", outcome: "deployed" }]);
    expect(await live(operator)).toEqual({
      web01: { commit: third, tree: await treeAt(third, "web01") },
      web02: { commit: fourth, tree: await treeAt(fourth, "web02") },
    });
    expect(await live(operator)).toEqual(await live(cli));
  });
});
