import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import { waitFor } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import { bedConfig, HostShell, operatorEnv } from "../helpers/host-shell.js";
import { OperatorProcess, type LogLine } from "../helpers/operator-process.js";
import { tidemark } from "../helpers/run-cli.js";
import { integrationLifecycle } from "../helpers/lifecycle.js";

const ENVIRONMENTS = { staging: ["web01", "web02"], production: ["web03"], pinned: ["web04"] } as const;
type Environment = keyof typeof ENVIRONMENTS;

/** The file a gated check waits for on the host: a deployment that lasts exactly as long as a test needs. */
const GATE = "/run/tidemark-test-gate";

/** An app whose check sleeps `delay` seconds, or with `gated`, waits until the test opens the gate. */
const app = (version: string, { delay = 0, gated = false, run = "exec sleep infinity" } = {}) => ({
  "app/systemd/app.service": "[Unit]\nDescription=app\n\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/app/current/run.sh\n",
  "app/manifest.json": JSON.stringify({
    systemd: { units_enabled: ["app.service"] },
    checks: [{ command: "sh check.sh", timeoutSeconds: 120 }],
  }),
  "app/check.sh": gated ? `while [ ! -e ${GATE} ]; do sleep 0.1; done\n` : `sleep ${delay}\n`,
  "app/run.sh": `${run}\n`,
  "app/version": `${version}\n`,
});

type HistoryJson = Array<{
  id: string;
  sourceCommit: string;
  sourceRef: string;
  trigger: string;
  hosts: Array<{ host: string; outcome: string; detail?: string }>;
}>;

describe("tidemark serve on systemd hosts: pushes become deployments", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let shell: HostShell;
  let operator: ReturnType<typeof operatorEnv>;
  let serveEnv: NodeJS.ProcessEnv;
  let serve: OperatorProcess;
  let redis: Redis;

  /** Files of every host of an environment, or of one host. */
  const tree = (environment: Environment, files: Record<string, string>, only?: string) =>
    Object.fromEntries(
      ENVIRONMENTS[environment]
        .filter((host) => !only || host === only)
        .flatMap((host) => Object.entries(files).map(([path, content]) => [`clusters/${environment}/${host}/${path}`, content])),
    );
  const version = (host: string) => shell.run(host, "cat /var/lib/tidemark/apps/app/current/version 2>/dev/null || echo none");
  const versions = async (environment: Environment) => Promise.all(ENVIRONMENTS[environment].map(version));
  const waitVersions = (environment: Environment, expected: string, timeoutMs = 30_000) =>
    waitFor(`${environment} to run ${expected}`, async () => (await versions(environment)).every((seen) => seen === expected), {
      timeoutMs,
      intervalMs: 100,
    });
  const history = async (environment: Environment) =>
    JSON.parse((await tidemark(["history", environment, "--json"], operator.env)).stdout) as HistoryJson;
  const started = (environment: Environment, after = 0) =>
    serve.lines.slice(after).filter((line) => line.msg === `${environment}: deployment started`);
  const finished = (environment: Environment, commit: string) => (line: LogLine) =>
    line.environment === environment && line.commit === commit && typeof line.outcome === "string";
  /** Waits until the intake has handled the push of `ref` at `sha` (by its delivery). */
  async function intake(ref: string, sha: string | null): Promise<LogLine[]> {
    const delivery = await waitFor(`the delivery of ${ref}`, async () =>
      (await bed.forge!.deliveries()).find(
        (d) =>
          (d.payload as { ref: string }).ref === ref &&
          (sha === null ? (d.payload as { deleted: boolean }).deleted : (d.payload as { after: string }).after === sha),
      ),
    );
    expect(delivery.status).toBe(202);
    await serve.waitForLog((line) => line.delivery === delivery.guid && line.trigger === "push");
    return serve.logs((line) => line.delivery === delivery.guid && line.trigger === "push");
  }

  const owned = integrationLifecycle({ forge: () => bed?.forge, log: () => serve });

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ systemdHosts: 4, redis: { aof: true }, forge: true }), (it) => it.down());
    work = owned.own(await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo)), (it) => it.remove());
    shell = owned.own(new HostShell(bed), (it) => it.close());
    operator = owned.own(operatorEnv(bed), (it) => it.remove());
    redis = owned.own(new Redis(bed.redis!.url, { maxRetriesPerRequest: null, retryStrategy: () => 50 }), (it) => it.disconnect());
    redis.on("error", () => undefined);
    await work.commit(
      {
        "tidemark.yaml": bedConfig(
          bed,
          [
            "staging: { track: { branch: main }, tree: clusters/staging }",
            'production: { track: { tags: "v*" }, tree: clusters/production }',
            "pinned: { track: { tag: stable }, tree: clusters/pinned }",
          ],
          "{ maxParallel: 1, canary: 0, maxFailures: 10 }",
        ),
        ...tree("staging", app("s0")),
        ...tree("production", app("p0")),
        ...tree("pinned", app("p0")),
      },
      "zero",
    );
    await work.push("main");
    serveEnv = {
      ...operator.env,
      TIDEMARK_REDIS_URL: bed.redis!.url,
      TIDEMARK_WEBHOOK_SECRET: bed.webhookSecret,
      TIDEMARK_LISTEN: "127.0.0.1:0",
      TIDEMARK_POLL_INTERVAL: "0",
      TIDEMARK_SETTLE: "0.3",
      TIDEMARK_LOG_LEVEL: "debug",
    };
    serve = await OperatorProcess.start("serve", serveEnv);
    await bed.forge!.addHook(bed.forgeRepo, { url: `${serve.url}/webhooks/github`, secret: bed.webhookSecret });
  });

  it("deploys a push to the tracked branch with no other input", async () => {
    const sha = await work.commit(tree("staging", app("s1")), "s1");
    await work.push("main");
    await waitVersions("staging", "s1");
    await serve.waitForLog(finished("staging", sha));
    const [last] = await history("staging");
    expect(last).toMatchObject({
      sourceCommit: sha,
      sourceRef: "refs/heads/main",
      trigger: "webhook",
      hosts: [
        { host: "web01", outcome: "deployed" },
        { host: "web02", outcome: "deployed" },
      ],
    });
    expect(await versions("production")).toEqual(["none"]);
  });

  it("moves a tags: v* environment with a pushed v1.3.0 and a pinned one with its tag, moved", async () => {
    const v13 = await work.commit({ ...tree("production", app("p13")), ...tree("pinned", app("pin1")) }, "p13");
    await work.tag("v1.3.0");
    await work.tag("stable");
    await work.push("main", "v1.3.0", "stable");
    await waitVersions("production", "p13");
    await waitVersions("pinned", "pin1");
    await serve.waitForLog(finished("production", v13));
    expect((await history("production"))[0]).toMatchObject({ sourceCommit: v13, sourceRef: "refs/tags/v1.3.0" });

    const pin2 = await work.commit(tree("pinned", app("pin2")), "pin2");
    await work.tag("stable", { force: true });
    await work.git("push", "--quiet", "--force", "origin", "refs/tags/stable");
    await waitVersions("pinned", "pin2");
    await serve.waitForLog(finished("pinned", pin2));
  });

  it("moves nothing for an older tag pushed after a newer one, a deleted pin, or a deleted newest tag", async () => {
    const deployments = (await history("production")).length + (await history("pinned")).length;
    const older = await work.commit(tree("production", app("p12")), "p12");
    await work.tag("v1.2.0");
    await work.push("v1.2.0");
    expect(await intake("refs/tags/v1.2.0", older)).toMatchObject([{ environment: "production", action: "current" }]);

    await work.git("push", "--quiet", "origin", ":refs/tags/stable");
    expect(await intake("refs/tags/stable", null)).toMatchObject([
      { environment: "pinned", action: "stays", reason: "refs/tags/stable was deleted; pinned stays where it is" },
    ]);

    // Deleting the newest tag leaves v1.2.0 the newest: still the environment does not go back, not even on a poll.
    await work.git("push", "--quiet", "origin", ":refs/tags/v1.3.0");
    await intake("refs/tags/v1.3.0", null);
    const refs = new Queue("refs", { connection: redis, prefix: "tidemark" });
    const poll = await refs.add("poll", { kind: "poll" });
    await refs.close();
    const polled = await serve.waitForLog(
      (line) => line.environment === "production" && line.trigger === "poll" && line.action === "stays",
    );
    expect(polled.reason).toBe("refs/tags/v1.2.0 is older than refs/tags/v1.3.0; production stays where it is");
    expect(poll.id).toBeDefined();
    expect(await versions("production")).toEqual(["p13"]);
    expect(await versions("pinned")).toEqual(["pin2"]);
    expect((await history("production")).length + (await history("pinned")).length).toBe(deployments);
  });

  it("collapses 20 pushes made during a deployment into one more: the hosts end on the last, the rest are superseded", async () => {
    const slow = await work.commit(tree("staging", app("slow", { gated: true })), "slow");
    const mark = serve.lines.length;
    await work.push("main");
    await serve.waitForLog((line) => line.msg === "staging: deployment started" && line.requested === slow);
    const pushed: string[] = [];
    for (let i = 1; i <= 20; i++) {
      pushed.push(await work.commit(tree("staging", app(`burst${i}`)), `burst ${i}`));
      await work.push("main");
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    // Only now may the slow deployment finish: all twenty pushes arrived while it ran.
    for (const host of ENVIRONMENTS.staging) await shell.run(host, `touch ${GATE}`);
    await waitVersions("staging", "burst20", 60_000);
    const last = await serve.waitForLog(finished("staging", pushed[19]!));
    // The slow one was still running when the last push arrived: one deployment for all twenty.
    expect(serve.lines.slice(mark).some(finished("staging", slow))).toBe(true);
    expect(started("staging", mark)).toHaveLength(2);
    expect(new Set(last.superseded as string[])).toEqual(new Set(pushed.slice(0, 19)));
    expect((await history("staging")).slice(0, 2).map((entry) => entry.sourceCommit)).toEqual([pushed[19], slow]);
  }, 120_000);

  it("rolls back a host whose unit fails and counts it in /metrics", async () => {
    const sha = await work.commit(
      { ...tree("staging", app("s2")), ...tree("staging", app("s2", { run: "exit 3" }), "web02") },
      "s2, broken on web02",
    );
    await work.push("main");
    const line = await serve.waitForLog(finished("staging", sha));
    expect(line.outcome).toBe("failed");
    expect(await versions("staging")).toEqual(["s2", "burst20"]);
    const metrics = await (await fetch(`${serve.url}/metrics`)).text();
    expect(metrics).toMatch(/^tidemark_auto_rollbacks_total\{environment="staging"\} 1$/m);
    expect(metrics).toMatch(/^tidemark_deployments_total\{environment="staging",outcome="failed"\} 1$/m);
    expect(metrics).toMatch(/^tidemark_host_outcomes_total\{environment="staging",outcome="rolled-back"\} 1$/m);
    expect(metrics).toMatch(/^tidemark_deployment_duration_seconds_count\{environment="staging"\} \d+$/m);
    expect(metrics).toMatch(/^tidemark_queue_jobs\{queue="deploy\.staging",state="waiting"\} 0$/m);
  });

  it("stops on SIGTERM after the host in flight, leaving no host half-switched; the job resumes in the next process", async () => {
    const sha = await work.commit(tree("staging", app("s3", { delay: 3 })), "s3");
    await work.push("main");
    // web01 has switched and is in its 3-second check: stop now.
    await waitFor("web01 to switch", async () => (await version("web01")) === "s3", { intervalMs: 50 });
    serve.kill("SIGTERM");
    expect(await serve.exited).toEqual({ code: 0, signal: null });
    expect(serve.logs((line) => line.msg === "stopping: finishing the hosts in flight")).toHaveLength(1);
    expect(await versions("staging")).toEqual(["s3", "burst20"]);
    const [cut] = await history("staging");
    expect(cut).toMatchObject({
      sourceCommit: sha,
      hosts: [
        { host: "web01", outcome: "deployed" },
        { host: "web02", outcome: "skipped", detail: expect.stringContaining("the operator stopped before this host") as string },
      ],
    });
    // web01 finished (target = current); web02 was never touched; both run a whole release.
    expect(await shell.run("web01", "cat /var/lib/tidemark/target; cat /var/lib/tidemark/current")).toMatch(/^(\S+ \S+)\n\1$/);
    for (const host of ENVIRONMENTS.staging)
      expect(await shell.run(host, 'test -d "$(readlink -f /var/lib/tidemark/apps/app/current)" && systemctl is-active app.service')).toBe(
        "active",
      );

    serve = await OperatorProcess.start("serve", serveEnv);
    await waitVersions("staging", "s3");
    await serve.waitForLog(finished("staging", sha));
    expect((await history("staging"))[0]).toMatchObject({
      sourceCommit: sha,
      hosts: [
        { host: "web01", outcome: "unchanged" },
        { host: "web02", outcome: "deployed" },
      ],
    });
  }, 120_000);

  it("rides out a Redis restart during a deployment: the job completes, nothing is lost, the next push deploys", async () => {
    await bed.forge!.addHook(bed.forgeRepo, { url: `${serve.url}/webhooks/github`, secret: bed.webhookSecret });
    const sha = await work.commit(tree("staging", app("s4", { delay: 2 })), "s4");
    await work.push("main");
    await serve.waitForLog((line) => line.msg === "staging: deployment started" && line.requested === sha);
    const mark = serve.lines.length;
    await bed.redis!.stop();
    await serve.waitForLog((line) => line.msg === "Redis connection error; reconnecting", 10_000, mark);
    await bed.redis!.start();
    await waitVersions("staging", "s4");
    await serve.waitForLog(finished("staging", sha));
    const deploys = new Queue("deploy.staging", { connection: redis, prefix: "tidemark" });
    await waitFor("the job to be completed", async () =>
      (await deploys.getJobs(["completed"])).some((job) => (job.returnvalue as { sourceCommit?: string } | null)?.sourceCommit === sha),
    );
    await deploys.close();

    await work.commit(tree("staging", app("s5")), "s5");
    await work.push("main");
    await waitVersions("staging", "s5");
  }, 120_000);

  it("with webhooks off, the poller deploys a push within one interval", async () => {
    await serve.stop();
    serve = await OperatorProcess.start("serve", { ...serveEnv, TIDEMARK_WEBHOOK_SECRET: "", TIDEMARK_POLL_INTERVAL: "2" });
    const sha = await work.commit(tree("staging", app("s6")), "s6");
    await work.push("main");
    // The forge's webhooks go to the stopped server: every delivery of this push fails, as when GitHub cannot reach the operator.
    const request = await serve.waitForLog(
      (line) => line.trigger === "poll" && line.environment === "staging" && line.commit === sha,
      2000 + 5000,
    );
    expect(request.action).toBe("requested");
    await waitVersions("staging", "s6");
    await serve.waitForLog(finished("staging", sha));
    expect((await history("staging"))[0]).toMatchObject({ sourceCommit: sha, trigger: "poll" });
  });
});
