import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSourceConfig } from "../src/config/source-config.js";
import type { Plan } from "../src/core/plan.js";
import { SourceMirror } from "../src/git/mirror.js";
import { prepareEnvironmentPlan, validateSource } from "../src/pipeline/plan-environment.js";
import { resolveEnvironment, type SourceCommit } from "../src/pipeline/read-source.js";
import { newDeploymentId, Store } from "../src/store/store.js";
import { TestBed } from "../test/bed/bed.js";
import { WorkRepo } from "../test/bed/work-repo.js";
import { median, ms } from "../test/helpers/report.js";
import type { Bench, BenchSection } from "./section.js";

/**
 * Planning cost follows the change, not the tree: a config tree of 10,000
 * files across 100 hosts, one file changed; then a fleet of 1,000 hosts, one
 * host changed and every host changed. Each planned against a warm mirror and
 * a store that has the previous deployment; then the same fleet said once
 * through `_all`, with a template rendered per host. `npm run bench -- plan`.
 */
const HOSTS = 100;
const APPS = 5;
const FILES = 20;
const RUNS = 15;
const FLEET = 1000;
const FLEET_RUNS_ALL = 5;
const LAYERED_FILES = 99;

const bench: Bench = async (log) => {
  const bed = await TestBed.up({ forge: true });
  const state = mkdtempSync(join(tmpdir(), "tidemark-bench-"));
  const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
  try {
    const mirror = await SourceMirror.open(bed.forge!.cloneUrl(bed.forgeRepo), join(state, "mirrors"));
    const wide = await wideTree(work, mirror, join(state, "wide.git"));
    log(`10,000 files: plan median ${wide.rows[0]![1]}`);
    const fleet = await fleetTree(work, mirror, join(state, "fleet.git"));
    log(`1,000 hosts: plan medians ${fleet.rows[0]![1]} (one host), ${fleet.rows[1]![1]} (every host)`);
    const layered = await layeredFleet(work, mirror, join(state, "layered.git"));
    log(`1,000 layered hosts: plan medians ${layered.rows[0]![1]} (shared file), ${layered.rows[1]![1]} (one host's value)`);
    return [wide, fleet, layered];
  } finally {
    work.remove();
    rmSync(state, { recursive: true, force: true });
    await bed.down();
  }
};
export default bench;

/** 100 hosts × 5 apps × 20 files, one file changed. */
async function wideTree(work: WorkRepo, mirror: SourceMirror, storeDir: string): Promise<BenchSection> {
  const hosts = Array.from({ length: HOSTS }, (_, i) => `host${String(i).padStart(3, "0")}`);
  rmSync(join(work.dir, "fleet"), { recursive: true, force: true });
  writeFileSync(join(work.dir, "tidemark.yaml"), tidemarkYaml(hosts, "fleet"));
  for (const host of hosts) {
    for (let a = 0; a < APPS; a++) {
      const app = join(work.dir, "fleet", host, `app${a}`);
      mkdirSync(app, { recursive: true });
      for (let f = 0; f < FILES; f++) writeFileSync(join(app, `file${f}.conf`), `${host} app${a} file${f}\n`.repeat(8));
    }
  }
  const { validateMs, importMs } = await deployFirst(work, mirror, storeDir, hosts, "10,000 files");

  // Each commit changes one file of another host and puts the one before back as deployed: every plan has one file changed.
  const fileOf = (run: number) => `${hosts[(42 + run * 7) % HOSTS]!}/app3/file7.conf`;
  const times = await timeFirstPlans(work, mirror, storeDir, RUNS, async (run) => {
    const restore = run > 0 ? { [`fleet/${fileOf(run - 1)}`]: `${fileOf(run - 1).split("/")[0]!} app3 file7\n`.repeat(8) } : {};
    await work.commit({ ...restore, [`fleet/${fileOf(run)}`]: `changed ${run}\n` }, `one file, ${run}`);
    return (plan) => expectFiles(plan, [`${fileOf(run)}:changed`]);
  });
  const planMs = median(times);
  return {
    title: "Plan time for 10,000 files",
    setup: `A config tree of ${HOSTS * APPS * FILES} files (${HOSTS} hosts × ${APPS} apps × ${FILES} files) and a store that holds its deployment. Each of ${RUNS} commits changes one file of another host (and puts the one before back); each commit's first plan is timed, in one process whose mirror and store handle stay open, as in a running operator.`,
    header: ["step", "median", "min", "max"],
    rows: [
      row("plan (one file changed)", times),
      ["validate the whole tree (once)", ms(validateMs), "", ""],
      ["first import of the whole tree into the store (once)", ms(importMs), "", ""],
    ],
    notes: [
      `Planning reads only what changed: the plan takes ${((planMs / validateMs) * 100).toFixed(1)} % of the time a full validation of the tree takes. Goal: median under 50 ms (${planMs < 50 ? "met" : "missed"}).`,
    ],
  };
}

/** 1,000 hosts of one small app each: one host's file changed, then a file every host shares. */
async function fleetTree(work: WorkRepo, mirror: SourceMirror, storeDir: string): Promise<BenchSection> {
  const hosts = Array.from({ length: FLEET }, (_, i) => `node${String(i).padStart(4, "0")}`);
  // The 10,000-file tree goes: this section's commits carry the fleet alone.
  rmSync(join(work.dir, "fleet"), { recursive: true, force: true });
  writeFileSync(join(work.dir, "tidemark.yaml"), tidemarkYaml(hosts, "fleet"));
  const files = (host: string, common: string) => ({
    "agent.conf": `node_name = ${host}\nlisten = 0.0.0.0:9100\n`,
    "limits.conf": `${host} nofile 65536\n`,
    "common.conf": common,
  });
  for (const host of hosts) {
    const app = join(work.dir, "fleet", host, "agent");
    mkdirSync(app, { recursive: true });
    for (const [name, content] of Object.entries(files(host, "log_level = info\n"))) writeFileSync(join(app, name), content);
  }
  const fileCount = hosts.length * Object.keys(files("", "")).length;
  const { validateMs, importMs } = await deployFirst(work, mirror, storeDir, hosts, `${FLEET} hosts`);

  // Each commit changes another host's file and puts the one before back as deployed: every plan has one host changed.
  const hostOf = (run: number) => hosts[100 + run * 50]!;
  const one = await timeFirstPlans(work, mirror, storeDir, RUNS, async (run) => {
    const restore = run > 0 ? { [`fleet/${hostOf(run - 1)}/agent/agent.conf`]: files(hostOf(run - 1), "")["agent.conf"] } : {};
    await work.commit(
      { ...restore, [`fleet/${hostOf(run)}/agent/agent.conf`]: `node_name = ${hostOf(run)}\nlisten = 0.0.0.0:9200\n` },
      `one host, ${run}`,
    );
    return (plan) => expectFiles(plan, [`${hostOf(run)}/agent/agent.conf:changed`]);
  });

  const all = await timeFirstPlans(work, mirror, storeDir, FLEET_RUNS_ALL, async (run) => {
    const restore = { [`fleet/${hostOf(RUNS - 1)}/agent/agent.conf`]: files(hostOf(RUNS - 1), "")["agent.conf"] };
    await work.commit(
      { ...restore, ...Object.fromEntries(hosts.map((host) => [`fleet/${host}/agent/common.conf`, `log_level = debug ${run}\n`])) },
      `every host, ${run}`,
    );
    return (plan) => {
      const common = plan.hosts.filter((host) =>
        host.apps.some((app) => app.files.some((file) => file.path === "common.conf" && file.change === "changed")),
      );
      if (plan.hosts.length !== FLEET || common.length !== FLEET)
        throw new Error(`wrong plan: ${plan.hosts.length} hosts, ${common.length} with common.conf changed`);
    };
  });
  const [oneMs, allMs] = [median(one), median(all)];
  return {
    title: "Planning for 1,000 hosts",
    setup: `A fleet of ${FLEET.toLocaleString("en")} hosts with one app of ${Object.keys(files("", "")).length} small files each (${fileCount.toLocaleString("en")} files) and a store that holds its deployment. Each commit's first plan is timed, in one process whose mirror and store handle stay open, as in a running operator; tidemark.yaml is parsed once per content and kept (a CLI run pays the parse once: its row). ${RUNS} commits each change another host's file (and put the one before back), then ${FLEET_RUNS_ALL} commits each change a file every host has, on all of them.`,
    header: ["step", "median", "min", "max"],
    rows: [
      row("plan (one file on one host)", one),
      row(`plan (a shared file changed on all ${FLEET.toLocaleString("en")} hosts)`, all),
      row(`parse tidemark.yaml of ${FLEET.toLocaleString("en")} hosts (kept by content after the first plan)`, parseTimes(work)),
      ["validate the whole tree (once)", ms(validateMs), "", ""],
      ["first import of the whole tree into the store (once)", ms(importMs), "", ""],
    ],
    notes: [
      `With one host changed, the plan for ${FLEET.toLocaleString("en")} hosts takes ${oneMs.toFixed(1)} ms: hosts whose tree oid did not change are skipped unread, and what remains is per fleet, not per change: each host's tree compared with the one live there, and a new tidemark.yaml parsed once (its row).`,
      `With every host changed it takes ${ms(allMs)}, ${((allMs - oneMs) / (FLEET - 1)).toFixed(2)} ms more for each further changed host.`,
    ],
  };
}

/** 1,000 hosts sharing one 100-file app through `_all`, with a template rendered per host from its own value: a shared file changed, then one host's value. */
async function layeredFleet(work: WorkRepo, mirror: SourceMirror, storeDir: string): Promise<BenchSection> {
  const hosts = Array.from({ length: FLEET }, (_, i) => `node${String(i).padStart(4, "0")}`);
  rmSync(join(work.dir, "fleet"), { recursive: true, force: true });
  const yaml = (port: (i: number) => number) => tidemarkYaml(hosts, "fleet", port);
  writeFileSync(
    join(work.dir, "tidemark.yaml"),
    yaml((i) => 9000 + i),
  );
  const app = join(work.dir, "fleet", "_all", "agent");
  mkdirSync(app, { recursive: true });
  const sharedFile = (f: number) => `shared file ${f}\n`.repeat(8);
  for (let f = 0; f < LAYERED_FILES; f++) writeFileSync(join(app, `file${f}.conf`), sharedFile(f));
  writeFileSync(join(app, "node.conf.tmpl"), "node_name = {{ host.name }}\nlisten = 0.0.0.0:{{ vars.port }}\n");
  const { validateMs, importMs } = await deployFirst(work, mirror, storeDir, hosts, `${FLEET} layered hosts`);

  // Each run plans a new commit once, as the operator plans a push: hosts built for earlier commits stay kept, the changed ones are built anew.
  const shared = await timeFirstPlans(work, mirror, storeDir, FLEET_RUNS_ALL, async (run) => {
    await work.commit({ "fleet/_all/agent/file7.conf": `changed ${run}\n` }, `a shared file, ${run}`);
    return (plan) => {
      const changed = plan.hosts.filter((host) =>
        host.apps.some((app) => app.files.some((file) => file.path === "file7.conf" && file.layer === "_all")),
      );
      if (plan.hosts.length !== FLEET || changed.length !== FLEET)
        throw new Error(`wrong plan: ${plan.hosts.length} hosts, ${changed.length} with _all's file7.conf changed`);
    };
  });
  const value = await timeFirstPlans(work, mirror, storeDir, RUNS, async (run) => {
    const host = 100 + run * 50;
    // _all's file7.conf as deployed: the store's deployment is the first one.
    await work.commit(
      { "tidemark.yaml": yaml((i) => (i === host ? 9999 : 9000 + i)), "fleet/_all/agent/file7.conf": sharedFile(7) },
      `one host's value, ${run}`,
    );
    return (plan) => expectFiles(plan, [`${hosts[host]!}/agent/node.conf:changed`]);
  });
  const [sharedMs, valueMs] = [median(shared), median(value)];
  return {
    title: "Planning for 1,000 hosts said once (layers and templates)",
    setup: `The same ${FLEET.toLocaleString("en")} hosts sharing one app of ${LAYERED_FILES + 1} files through \`_all\`: ${LAYERED_FILES} plain files and \`node.conf.tmpl\`, rendered for each host from its name and its own \`vars.port\` in tidemark.yaml. Each run commits a new change and times its first plan, in one process whose mirror, store handle and built hosts stay warm between commits, as in a running operator: a shared file changed (${FLEET_RUNS_ALL} commits: every host built anew from its layers), then one host's value (${RUNS} commits, a different host each: that host built anew, the others kept).`,
    header: ["step", "median", "min", "max"],
    rows: [
      row(`plan (a file of _all changed: all ${FLEET.toLocaleString("en")} hosts)`, shared),
      row("plan (one host's value changed: that host)", value),
      ["validate the whole tree (once, every host built and rendered)", ms(validateMs), "", ""],
      ["first import of the effective trees into the store (once)", ms(importMs), "", ""],
    ],
    notes: [
      `A change to a shared file plans all ${FLEET.toLocaleString("en")} hosts in ${ms(sharedMs)}; goal: at most 1 s (${sharedMs <= 1000 ? "met" : "missed"}).`,
      `A change to one host's value plans that host alone in ${valueMs.toFixed(1)} ms; goal: at most 50 ms (${valueMs <= 50 ? "met" : "missed"}). Most of it is per fleet, as in the flat fleet's one-host plan above: tidemark.yaml's ${FLEET.toLocaleString("en")} hosts parsed, each host's values merged and its inputs compared.`,
    ],
  };
}

/** A table row of timings: median, min and max. */
function row(step: string, times: number[]): string[] {
  return [step, `${median(times).toFixed(1)} ms`, `${Math.min(...times).toFixed(1)} ms`, `${Math.max(...times).toFixed(1)} ms`];
}

function tidemarkYaml(hosts: string[], tree: string, port?: (i: number) => number): string {
  const inventory = hosts
    .map((host, i) => `  ${host}: { address: 127.0.0.1, port: ${20000 + i}${port ? `, vars: { port: ${port(i)} }` : ""} }`)
    .join("\n");
  return `environments:\n  production: { track: { branch: main }, tree: ${tree} }\nhosts:\n${inventory}\n`;
}

/** Commits what is in the work dir and records it in a new store as deployed to every host; times a whole validation and the first import. */
async function deployFirst(
  work: WorkRepo,
  mirror: SourceMirror,
  storeDir: string,
  hosts: string[],
  message: string,
): Promise<{ validateMs: number; importMs: number }> {
  await work.commit({}, message);
  await work.push("main");
  await mirror.fetch();
  const store = await Store.open(storeDir);
  const first = await resolveEnvironment(mirror, "production");
  const validateStart = performance.now();
  const problems = await validateSource(mirror, first.commit);
  const validateMs = performance.now() - validateStart;
  if (problems.length > 0) throw new Error(`the benchmark tree is invalid: ${JSON.stringify(problems.slice(0, 3))}`);
  const initial = await prepareEnvironmentPlan(mirror, store, "production", first);
  const importStart = performance.now();
  await store.importTree(initial.repo, initial.envTreeOid, initial.built);
  const importMs = performance.now() - importStart;
  await store.record(
    {
      id: newDeploymentId(),
      environment: "production",
      sourceRepo: mirror.url,
      sourceCommit: first.commit,
      sourceRef: first.ref,
      trigger: "cli",
      hosts: hosts.map((host) => ({ host, outcome: "deployed" })),
    },
    initial.envTreeOid,
  );
  return { validateMs, importMs };
}

/** tidemark.yaml as it is in the work dir, parsed afresh: what a plan of a new tidemark.yaml pays once. */
function parseTimes(work: WorkRepo): number[] {
  const text = readFileSync(join(work.dir, "tidemark.yaml"), "utf8");
  return Array.from({ length: RUNS }, () => {
    const started = performance.now();
    const { problems } = parseSourceConfig(text);
    if (problems.length > 0) throw new Error(`the benchmark's tidemark.yaml is invalid: ${JSON.stringify(problems.slice(0, 3))}`);
    return performance.now() - started;
  });
}

/** Makes a new commit for each run, then pushes it and times its first plan, checked, against one store handle kept open, as the operator keeps its own. */
async function timeFirstPlans(
  work: WorkRepo,
  mirror: SourceMirror,
  storeDir: string,
  runs: number,
  commit: (run: number) => Promise<(plan: Plan) => void>,
): Promise<number[]> {
  const store = await Store.open(storeDir);
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    const check = await commit(run);
    await work.push("main");
    await mirror.fetch();
    const started = performance.now();
    // Resolving the environment reads tidemark.yaml, as `tidemark plan` does before it plans: timed with the plan.
    const next: SourceCommit = await resolveEnvironment(mirror, "production");
    const { plan } = await prepareEnvironmentPlan(mirror, store, "production", next);
    times.push(performance.now() - started);
    check(plan);
  }
  return times;
}

function expectFiles(plan: Plan, expected: string[]): void {
  const files = plan.hosts.flatMap((host) =>
    host.apps.flatMap((app) => app.files.map((file) => `${host.host}/${app.app}/${file.path}:${file.change}`)),
  );
  if (files.join() !== expected.join()) throw new Error(`wrong plan: ${files.join()}`);
}
