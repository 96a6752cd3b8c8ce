import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SourceMirror } from "../../src/git/mirror.js";
import { prepareEnvironmentPlan } from "../../src/pipeline/plan-environment.js";
import { resolveEnvironment } from "../../src/pipeline/read-source.js";
import { newDeploymentId, Store } from "../../src/store/store.js";
import { TestBed } from "../bed/bed.js";
import { WorkRepo } from "../bed/work-repo.js";
import { CONFIG_YAML } from "../helpers/configs.js";
import { tidemark } from "../helpers/run-cli.js";

describe("tidemark validate, plan, status and history against a source repo on the forge", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let state: string;
  let env: NodeJS.ProcessEnv;

  const NGINX = {
    "tidemark.yaml": CONFIG_YAML,
    "clusters/staging/web01/nginx/nginx.conf": "worker_processes 1;\n",
    "clusters/staging/web01/nginx/manifest.json": JSON.stringify({ systemd: { units_enabled: ["nginx.service"] } }),
    "clusters/staging/web01/nginx/systemd/nginx.service": "[Service]\nExecStart=/usr/sbin/nginx\n",
    "clusters/staging/web02/redis/redis.conf": "port 6379\n",
    "clusters/production/web01/nginx/nginx.conf": "worker_processes 8;\n",
  };

  beforeAll(async () => {
    bed = await TestBed.up({ forge: true });
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    state = mkdtempSync(join(tmpdir(), "tidemark-state-"));
    env = {
      TIDEMARK_REPO: bed.forge!.cloneUrl(bed.forgeRepo),
      TIDEMARK_STORE: join(state, "store.git"),
      TIDEMARK_MIRRORS: join(state, "mirrors"),
    };
    await work.commit(NGINX, "nginx on web01, redis on web02");
    await work.push("main");
  });

  afterAll(async () => {
    work?.remove();
    rmSync(state, { recursive: true, force: true });
    await bed?.down();
  });

  /** What a deployment would leave in the store once every host succeeded (the deploy command of the next issue does this). */
  async function recordDeployed(environment: string) {
    const mirror = await SourceMirror.open(env.TIDEMARK_REPO!, env.TIDEMARK_MIRRORS!);
    await mirror.fetch();
    const store = await Store.open(env.TIDEMARK_STORE!);
    const source = await resolveEnvironment(mirror, environment);
    const prepared = await prepareEnvironmentPlan(mirror, store, environment, source);
    await store.importTree(mirror.reader, prepared.envTreeOid);
    const id = newDeploymentId();
    await store.record(
      {
        id,
        environment,
        sourceRepo: mirror.url,
        sourceCommit: source.commit,
        sourceRef: source.ref,
        trigger: "cli",
        hosts: [...prepared.desired.hosts.keys()].map((host) => ({
          host,
          outcome: prepared.plan.hosts.some((planned) => planned.host === host) ? "deployed" : "unchanged",
        })),
      },
      prepared.envTreeOid,
    );
    return id;
  }

  it("validates the tree without touching a host", async () => {
    const result = await tidemark(["validate"], env);
    expect(result).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(/^valid: tidemark.yaml and every environment's tree at [0-9a-f]{7} \(refs\/heads\/main\)/) as string,
    });
  });

  it("plans the first deployment of every app, then nothing once it is recorded, then just the change", async () => {
    const first = await tidemark(["plan", "staging"], env);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain("staging: 2 hosts would change");
    expect(first.stdout).toMatch(
      /web01 {2}\(empty\) -> [0-9a-f]{7} {2}\(rollback available\)\n {2}\+ nginx\n {6}\+ manifest.json\n {6}\+ nginx.conf\n {6}\+ systemd\/nginx.service\n {2}enable {2}nginx.service\n {2}restart nginx.service/,
    );

    await recordDeployed("staging");
    expect((await tidemark(["plan", "staging"], env)).stdout).toContain("staging: nothing to do, every host is up to date");

    await work.commit({ "clusters/staging/web01/nginx/nginx.conf": "worker_processes 2;\n" }, "two workers");
    await work.push("main");
    const json = JSON.parse((await tidemark(["plan", "staging", "--json"], env)).stdout) as {
      schema: string;
      source: { commit: string };
      hosts: Array<{ host: string; apps: Array<{ app: string; change: string; files: unknown[] }> }>;
    };
    expect(json.schema).toBe("tidemark.plan/v1");
    expect(json.source.commit).toBe(await work.head());
    expect(json.hosts).toEqual([
      expect.objectContaining({
        host: "web01",
        apps: [expect.objectContaining({ app: "nginx", change: "changed", files: [{ path: "nginx.conf", change: "changed" }] })],
      }),
    ]);
  });

  it("shows status and history from the store", async () => {
    const id = await recordDeployed("staging");
    const status = JSON.parse((await tidemark(["status", "staging", "--json"], env)).stdout) as {
      lastAttempt: { deployment: string };
      hosts: Array<{ host: string; pending: boolean }>;
    };
    expect(status.lastAttempt.deployment).toBe(id);
    expect(status.hosts).toEqual([
      expect.objectContaining({ host: "web01", pending: false }),
      expect.objectContaining({ host: "web02", pending: false }),
    ]);
    const history = await tidemark(["history", "staging"], env);
    expect(history.stdout.split("\n").filter(Boolean)).toHaveLength(2);
    expect(history.stdout.split("\n")[0]).toMatch(/web01 (deployed|unchanged), web02 unchanged$/);
    expect(history.stdout.split("\n")[0]).toContain(`${id}  `);
  });

  it("shows a host that rolled back as pending, keeping what is live there", async () => {
    const live = await recordDeployed("staging");
    await work.commit({ "clusters/staging/web01/nginx/nginx.conf": "worker_processes 3;\n" }, "three workers");
    await work.push("main");
    const mirror = await SourceMirror.open(env.TIDEMARK_REPO!, env.TIDEMARK_MIRRORS!);
    await mirror.fetch();
    const store = await Store.open(env.TIDEMARK_STORE!);
    const source = await resolveEnvironment(mirror, "staging");
    const prepared = await prepareEnvironmentPlan(mirror, store, "staging", source);
    await store.importTree(mirror.reader, prepared.envTreeOid);
    await store.record(
      {
        id: newDeploymentId(),
        environment: "staging",
        sourceRepo: mirror.url,
        sourceCommit: source.commit,
        sourceRef: source.ref,
        trigger: "webhook",
        hosts: [{ host: "web01", outcome: "rolled-back", detail: "nginx.service failed (exit-code)" }],
      },
      prepared.envTreeOid,
    );

    const status = await tidemark(["status", "staging"], env);
    expect(status.stdout).toMatch(new RegExp(`web01 +live ${live} .*pending: rolled-back in \\S+: nginx.service failed \\(exit-code\\)`));
    // The change is still to be made there.
    expect((await tidemark(["plan", "staging"], env)).stdout).toContain("~ nginx.conf");
  });

  it("says clearly when no source repo is given", async () => {
    const result = await tidemark(["plan", "staging"], { TIDEMARK_STORE: env.TIDEMARK_STORE });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("no source repo given (REPO_MISSING)\n  hint: pass --repo URL or set TIDEMARK_REPO");
  });
});
