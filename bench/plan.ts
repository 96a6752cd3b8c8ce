import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SourceMirror } from "../src/git/mirror.js";
import { prepareEnvironmentPlan, validateSource } from "../src/pipeline/plan-environment.js";
import { resolveEnvironment } from "../src/pipeline/read-source.js";
import { newDeploymentId, Store } from "../src/store/store.js";
import { TestBed } from "../test/bed/bed.js";
import { WorkRepo } from "../test/bed/work-repo.js";

/**
 * Planning cost follows the change, not the tree: a config tree of 10,000
 * files across 100 hosts, one file changed, planned against a warm mirror and
 * a store that has the previous deployment. `npm run bench:plan`.
 */
const HOSTS = 100;
const APPS = 5;
const FILES = 20;
const RUNS = 15;

const bed = await TestBed.up({ forge: true });
const state = mkdtempSync(join(tmpdir(), "tidemark-bench-"));
const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
try {
  const hosts = Array.from({ length: HOSTS }, (_, i) => `host${String(i).padStart(3, "0")}`);
  const inventory = hosts.map((host, i) => `  ${host}: { address: 127.0.0.1, port: ${20000 + i} }`).join("\n");
  writeFileSync(join(work.dir, "tidemark.yaml"), `environments:\n  production: { track: { branch: main }, tree: fleet }\nhosts:\n${inventory}\n`);
  for (const host of hosts) {
    for (let a = 0; a < APPS; a++) {
      const app = join(work.dir, "fleet", host, `app${a}`);
      mkdirSync(app, { recursive: true });
      for (let f = 0; f < FILES; f++) writeFileSync(join(app, `file${f}.conf`), `${host} app${a} file${f}\n`.repeat(8));
    }
  }
  await work.commit({}, "10,000 files");
  await work.push("main");

  const mirror = await SourceMirror.open(bed.forge!.cloneUrl(bed.forgeRepo), join(state, "mirrors"));
  await mirror.fetch();
  const store = await Store.open(join(state, "store.git"));
  const first = await resolveEnvironment(mirror, "production");
  const validateStart = performance.now();
  const problems = await validateSource(mirror, first.commit);
  const validateMs = performance.now() - validateStart;
  if (problems.length > 0) throw new Error(`the benchmark tree is invalid: ${JSON.stringify(problems.slice(0, 3))}`);
  const initial = await prepareEnvironmentPlan(mirror, store, "production", first);
  const importStart = performance.now();
  await store.importTree(mirror.reader, initial.envTreeOid);
  const importMs = performance.now() - importStart;
  await store.record({ id: newDeploymentId(), environment: "production", sourceRepo: mirror.url, sourceCommit: first.commit, sourceRef: first.ref, trigger: "cli", hosts: hosts.map((host) => ({ host, outcome: "deployed" })) }, initial.envTreeOid);

  await work.commit({ "fleet/host042/app3/file7.conf": "changed\n" }, "one file");
  await work.push("main");
  await mirror.fetch();
  const next = await resolveEnvironment(mirror, "production");

  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    // A fresh store handle each run: no cache carried over from the run before.
    const fresh = await Store.open(join(state, "store.git"));
    const started = performance.now();
    const { plan } = await prepareEnvironmentPlan(mirror, fresh, "production", next);
    times.push(performance.now() - started);
    const files = plan.hosts.flatMap((host) => host.apps.flatMap((app) => app.files.map((file) => `${host.host}/${app.app}/${file.path}:${file.change}`)));
    if (files.join() !== "host042/app3/file7.conf:changed") throw new Error(`wrong plan: ${files.join()}`);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)]!;
  console.log(`plan, ${HOSTS * APPS * FILES} files on ${HOSTS} hosts, one file changed (${RUNS} runs, warm mirror):`);
  console.log(`  median ${median.toFixed(1)} ms   min ${times[0]!.toFixed(1)} ms   max ${times[times.length - 1]!.toFixed(1)} ms   (goal: median under 50 ms)`);
  console.log(`validate of the whole tree, for comparison: ${validateMs.toFixed(0)} ms (${(validateMs / median).toFixed(0)}x the plan)`);
  console.log(`first import of the whole tree into the store: ${(importMs / 1000).toFixed(1)} s`);
} finally {
  work.remove();
  rmSync(state, { recursive: true, force: true });
  await bed.down();
}
