import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SourceMirror } from "../src/git/mirror.js";
import { prepareEnvironmentPlan } from "../src/pipeline/plan-environment.js";
import { resolveEnvironment } from "../src/pipeline/read-source.js";
import { newDeploymentId, Store } from "../src/store/store.js";
import { TestBed } from "../test/bed/bed.js";
import { WorkRepo } from "../test/bed/work-repo.js";

const MODE = process.argv[2] ?? "value";
const hosts = Array.from({ length: 1000 }, (_, i) => `node${String(i).padStart(4, "0")}`);
const yaml = (port: (i: number) => number) =>
  `environments:\n  production: { track: { branch: main }, tree: fleet }\nhosts:\n${hosts.map((h, i) => `  ${h}: { address: 127.0.0.1, port: ${20000 + i}, vars: { port: ${port(i)} } }`).join("\n")}\n`;
const bed = await TestBed.up({ forge: true });
const state = mkdtempSync(join(tmpdir(), "prof-"));
const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
try {
  writeFileSync(join(work.dir, "tidemark.yaml"), yaml((i) => 9000 + i));
  const app = join(work.dir, "fleet", "_all", "agent");
  mkdirSync(app, { recursive: true });
  for (let f = 0; f < 99; f++) writeFileSync(join(app, `file${f}.conf`), `shared file ${f}\n`.repeat(8));
  writeFileSync(join(app, "node.conf.tmpl"), "node_name = {{ host.name }}\nlisten = 0.0.0.0:{{ vars.port }}\n");
  await work.commit({}, "first");
  await work.push("main");
  const mirror = await SourceMirror.open(bed.forge!.cloneUrl(bed.forgeRepo), join(state, "mirrors"));
  await mirror.fetch();
  const storeDir = join(state, "store.git");
  const store = await Store.open(storeDir);
  const first = await resolveEnvironment(mirror, "production");
  const initial = await prepareEnvironmentPlan(mirror, store, "production", first);
  await store.importTree(initial.repo, initial.envTreeOid, initial.built);
  await store.record({ id: newDeploymentId(), environment: "production", sourceRepo: mirror.url, sourceCommit: first.commit, sourceRef: first.ref, trigger: "cli", hosts: hosts.map((host) => ({ host, outcome: "deployed" })) }, initial.envTreeOid);
  for (let run = 0; run < 8; run++) {
    if (MODE === "value") await work.commit({ "tidemark.yaml": yaml((i) => (i === 100 + run ? 9999 : 9000 + i)) }, `v${run}`);
    else await work.commit({ "fleet/_all/agent/file7.conf": `changed ${run}\n` }, `s${run}`);
    await work.push("main");
    await mirror.fetch();
    const next = await resolveEnvironment(mirror, "production");
    const probe = await Store.open(storeDir);
    const git = (await import("isomorphic-git")).default;
    const { repoFs } = await import("../src/git/atomic-fs.js");
    let t0 = performance.now();
    const refs = await git.listRefs({ fs: repoFs(storeDir), gitdir: storeDir, filepath: "refs/tidemark/hosts/production" });
    const tList = performance.now() - t0; t0 = performance.now();
    await Promise.all(refs.map((h) => probe.resolve(`refs/tidemark/hosts/production/${h}`)));
    const tRes = performance.now() - t0; t0 = performance.now();
    await probe.liveHostTrees("production");
    console.log("listRefs", tList.toFixed(0), "resolve", tRes.toFixed(0), "liveHostTrees", (performance.now() - t0).toFixed(0));
    const fresh = await Store.open(storeDir);
    const t = performance.now();
    const { plan } = await prepareEnvironmentPlan(mirror, fresh, "production", next);
    console.log(MODE, run, (performance.now() - t).toFixed(0), "ms", plan.hosts.length, "hosts");
  }
} finally {
  work.remove();
  rmSync(state, { recursive: true, force: true });
  await bed.down();
}
