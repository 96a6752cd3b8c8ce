import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SourceMirror } from "../src/git/mirror.js";
import { prepareEnvironmentPlan, validateSource } from "../src/pipeline/plan-environment.js";
import { resolveEnvironment } from "../src/pipeline/read-source.js";
import { newDeploymentId, Store } from "../src/store/store.js";
import { TestBed } from "../test/bed/bed.js";
import { WorkRepo } from "../test/bed/work-repo.js";
import { median, ms } from "../test/helpers/report.js";
import type { Bench } from "./section.js";

/**
 * Planning cost follows the change, not the tree: a config tree of 10,000
 * files across 100 hosts, one file changed, planned against a warm mirror and
 * a store that has the previous deployment. `npm run bench -- plan`.
 */
const HOSTS = 100;
const APPS = 5;
const FILES = 20;
const RUNS = 15;

const bench: Bench = async () => {
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
    const planMs = median(times);
    return [
      {
        title: "Plan time for 10,000 files",
        setup: `A config tree of ${HOSTS * APPS * FILES} files (${HOSTS} hosts × ${APPS} apps × ${FILES} files), one file changed, planned against a warm mirror and a store that holds the previous deployment; a fresh store handle each run, ${RUNS} runs.`,
        header: ["step", "median", "min", "max"],
        rows: [
          ["plan (one file changed)", `${planMs.toFixed(1)} ms`, `${Math.min(...times).toFixed(1)} ms`, `${Math.max(...times).toFixed(1)} ms`],
          ["validate the whole tree (once)", ms(validateMs), "", ""],
          ["first import of the whole tree into the store (once)", ms(importMs), "", ""],
        ],
        notes: [`Planning reads only what changed: the plan takes ${(planMs / validateMs * 100).toFixed(1)} % of the time a full validation of the tree takes. Goal: median under 50 ms (${planMs < 50 ? "met" : "missed"}).`],
      },
    ];
  } finally {
    work.remove();
    rmSync(state, { recursive: true, force: true });
    await bed.down();
  }
};
export default bench;
