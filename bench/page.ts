import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import git from "isomorphic-git";
import { Registry } from "prom-client";
import type { HostRecord } from "../src/core/outcome.js";
import { repoFs } from "../src/git/atomic-fs.js";
import { SourceMirror } from "../src/git/mirror.js";
import { startHttp, stopHttp } from "../src/http/server.js";
import { prepareEnvironmentPlan } from "../src/pipeline/plan-environment.js";
import { resolveEnvironment } from "../src/pipeline/read-source.js";
import { newDeploymentId, Store } from "../src/store/store.js";
import { OperatorSite } from "../src/web/site.js";
import { TestBed } from "../test/bed/bed.js";
import { WorkRepo } from "../test/bed/work-repo.js";
import { median, ms, ratio } from "../test/helpers/report.js";
import type { Bench } from "./section.js";

/**
 * The operator's page with 1,000 deployments in the store: a deployment's
 * page (plan, timelines, output) against /healthz on the same server, side
 * by side in one run. `npm run bench -- page`; TIDEMARK_BENCH_REQUESTS sets the requests.
 */
const DEPLOYMENTS = 1000;
const HOSTS = 10;
const REQUESTS = Number(process.env.TIDEMARK_BENCH_REQUESTS ?? 300);

const bench: Bench = async (log) => {
  const bed = await TestBed.up({ forge: true });
  const state = mkdtempSync(join(tmpdir(), "tidemark-bench-page-"));
  const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
  let server: Awaited<ReturnType<typeof startHttp>>["server"] | undefined;
  try {
    const hosts = Array.from({ length: HOSTS }, (_, i) => `web${String(i + 1).padStart(2, "0")}`);
    writeFileSync(
      join(work.dir, "tidemark.yaml"),
      `environments:\n  staging: { track: { branch: main }, tree: clusters/staging }\nhosts:\n${hosts.map((host, i) => `  ${host}: { address: 127.0.0.1, port: ${22000 + i} }`).join("\n")}\n`,
    );
    for (const host of hosts) {
      for (const app of ["nginx", "api", "worker"]) {
        const dir = join(work.dir, "clusters/staging", host, app);
        mkdirSync(join(dir, "systemd"), { recursive: true });
        for (let f = 0; f < 10; f++) writeFileSync(join(dir, `conf${f}.conf`), `${host} ${app} ${f}\n`);
        writeFileSync(join(dir, "systemd", `${app}.service`), `[Service]\nExecStart=/bin/sleep infinity\n`);
        writeFileSync(join(dir, "manifest.json"), JSON.stringify({ systemd: { units_enabled: [`${app}.service`] } }));
      }
    }
    await work.commit({}, "fleet");
    await work.push("main");
    const mirror = await SourceMirror.open(bed.forge!.cloneUrl(bed.forgeRepo), join(state, "mirrors"));
    await mirror.fetch();
    const store = await Store.open(join(state, "store.git"));
    const source = await resolveEnvironment(mirror, "staging");
    const { envTreeOid } = await prepareEnvironmentPlan(mirror, store, "staging", source);
    await store.importTree(mirror.reader, envTreeOid);

    // 1,000 deployments, each changing one file on one host; every tenth rolled back with unit output.
    log(`seeding the store with ${DEPLOYMENTS} deployments`);
    const seeding = performance.now();
    const fs = repoFs(store.gitdir);
    const gitdir = store.gitdir;
    const ids: string[] = [];
    let tree = envTreeOid;
    for (let i = 0; i < DEPLOYMENTS; i++) {
      const host = hosts[i % HOSTS]!;
      tree = await replaceFile(fs, gitdir, tree, [host, "nginx", "conf0.conf"], `deployment ${i}\n`);
      const failed = i % 10 === 9;
      const steps = [
        "connect",
        "lock",
        "inspect",
        "upload",
        "switch",
        "restart",
        "check",
        ...(failed ? ["rollback", "switch", "restart", "check"] : ["commit"]),
        "done",
      ];
      const record: HostRecord = {
        host,
        outcome: failed ? "rolled-back" : "deployed",
        timeline: steps.map((phase, s) => ({ phase, at: s * 40 })),
        uploadedBytes: 14,
        ...(failed
          ? {
              detail: "nginx.service failed (exit-code); rolled back to 1a2b3c4",
              log: `nginx.service:\n${"nginx: [emerg] unknown directive\n".repeat(20)}`,
            }
          : {}),
      };
      const id = newDeploymentId(new Date(Date.UTC(2026, 0, 1) + i * 60_000));
      ids.push(id);
      await store.record(
        {
          id,
          environment: "staging",
          sourceRepo: mirror.url,
          sourceCommit: source.commit,
          sourceRef: source.ref,
          trigger: "webhook",
          startedAt: new Date(),
          hosts: hosts.map((name) => (name === host ? record : { host: name, outcome: "unchanged" })),
        },
        tree,
      );
    }
    const seedMs = performance.now() - seeding;

    const site = new OperatorSite(store, mirror, undefined);
    const started = await startHttp("127.0.0.1:0", {
      site,
      ready: () => Promise.resolve({ ok: true, checks: {} }),
      metrics: new Registry(),
      onError: (error) => log(`server error: ${String(error)}`),
    });
    server = started.server;
    const time = async (path: string): Promise<number> => {
      const begun = performance.now();
      const response = await fetch(`${started.url}${path}`);
      const body = await response.text();
      const took = performance.now() - begun;
      if (response.status !== 200) throw new Error(`${path}: HTTP ${response.status}: ${body.slice(0, 200)}`);
      return took;
    };

    const first = await time(`/deployments/${ids[DEPLOYMENTS - 1]}`);
    const page = await fetch(`${started.url}/deployments/${ids[DEPLOYMENTS - 11]}`).then((response) => response.text());
    for (const expected of ["rolled-back", "nginx: [emerg] unknown directive", "conf0.conf", "Timeline"]) {
      if (!page.includes(expected)) throw new Error(`the deployment page lacks ${JSON.stringify(expected)}`);
    }

    log(`${REQUESTS} requests for deployment pages, interleaved with /healthz`);
    const samples = { deployment: [] as number[], environment: [] as number[], overview: [] as number[], healthz: [] as number[] };
    for (let r = 0; r < REQUESTS; r++) {
      // Interleaved, so that the machine's noise falls on every kind alike.
      samples.deployment.push(await time(`/deployments/${ids[Math.floor(Math.random() * DEPLOYMENTS)]}`));
      samples.healthz.push(await time("/healthz"));
      if (r % 10 === 0) {
        samples.environment.push(await time("/environments/staging"));
        samples.overview.push(await time("/"));
      }
    }
    const quantile = (values: number[], q: number) =>
      [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * q))]!;
    const fine = (value: number) => `${value.toFixed(1)} ms`;
    const labels: Record<keyof typeof samples, string> = {
      deployment: "`/deployments/<id>` (plan, timeline, output)",
      environment: "`/environments/staging` (history)",
      overview: "`/` (overview, pending plan)",
      healthz: "`/healthz`",
    };
    const healthz = median(samples.healthz);
    const deployment = samples.deployment;
    return [
      {
        title: "The operator's page with 1,000 deployments",
        setup: `The operator's page with ${DEPLOYMENTS} deployments in the store (${HOSTS} hosts, 30 apps, 330 files; every tenth deployment rolled back with unit output), one client, ${REQUESTS} requests for random deployment pages interleaved with \`/healthz\` on the same server (and every tenth round the environment page and the overview), in one run.`,
        header: ["page", "median", "p95", "p99", "requests", "vs `/healthz`"],
        rows: (Object.keys(samples) as Array<keyof typeof samples>).map((kind) => [
          labels[kind],
          fine(median(samples[kind])),
          fine(quantile(samples[kind], 0.95)),
          fine(quantile(samples[kind], 0.99)),
          String(samples[kind].length),
          kind === "healthz" ? "1" : ratio(median(samples[kind]), healthz),
        ]),
        notes: [
          `Goal: a deployment's page under 50 ms with ${DEPLOYMENTS} deployments: ${quantile(deployment, 0.99) < 50 ? "met at p99" : median(deployment) < 50 ? "met at the median, not at p99" : "missed"}.`,
          `The first request after start reads the whole history: ${ms(first)} (\`serve\` does that at start, before anyone asks). Seeding the store took ${ms(seedMs)}.`,
        ],
      },
    ];
  } finally {
    if (server) await stopHttp(server);
    work.remove();
    rmSync(state, { recursive: true, force: true });
    await bed.down();
  }
};
export default bench;

/** A copy of `tree` with one file's content replaced; the trees above it are written anew. */
async function replaceFile(fs: ReturnType<typeof repoFs>, gitdir: string, tree: string, path: string[], content: string): Promise<string> {
  const entries = (await git.readTree({ fs, gitdir, oid: tree })).tree;
  const [name, ...rest] = path;
  const oid =
    rest.length === 0
      ? await git.writeBlob({ fs, gitdir, blob: Buffer.from(content) })
      : await replaceFile(fs, gitdir, entries.find((entry) => entry.path === name)!.oid, rest, content);
  return git.writeTree({ fs, gitdir, tree: entries.map((entry) => (entry.path === name ? { ...entry, oid } : entry)) });
}
