import git from "isomorphic-git";
import { repoFs } from "../../src/git/atomic-fs.js";
import { newDeploymentId, Store } from "../../src/store/store.js";

/**
 * A separate process that appends deployments to a store as fast as it can:
 * `node --import tsx store-appender.ts STORE COUNT`. It prints `ready`, then
 * one `appended <id>` line per recorded deployment. Tests kill it at random.
 */
const [gitdir, countText] = process.argv.slice(2);
const store = await Store.open(gitdir!);
const fs = repoFs(gitdir!);
console.log("ready");
for (let i = 0; i < Number(countText); i++) {
  const id = newDeploymentId();
  // A tree of its own per deployment, so objects are written on every append.
  const blob = await git.writeBlob({ fs, gitdir: gitdir!, blob: Buffer.from(`${id}\n`) });
  const app = await git.writeTree({ fs, gitdir: gitdir!, tree: [{ mode: "100644", path: "release", oid: blob, type: "blob" }] });
  const host = await git.writeTree({ fs, gitdir: gitdir!, tree: [{ mode: "040000", path: "app", oid: app, type: "tree" }] });
  const root = await git.writeTree({ fs, gitdir: gitdir!, tree: [{ mode: "040000", path: "web01", oid: host, type: "tree" }] });
  await store.record(
    {
      id,
      environment: "staging",
      sourceRepo: "http://127.0.0.1/acme/fleet.git",
      sourceCommit: blob,
      sourceRef: "refs/heads/main",
      trigger: "cli",
      hosts: [{ host: "web01", outcome: "deployed" }],
    },
    root,
  );
  console.log(`appended ${id}`);
}
