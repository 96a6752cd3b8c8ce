import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import type { ApiRequest } from "../bed/forge/github-api.js";
import { waitFor } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import { bedConfig, HostShell, operatorEnv, reportingServeEnv } from "../helpers/host-shell.js";
import { OperatorProcess, type LogLine } from "../helpers/operator-process.js";
import { integrationLifecycle } from "../helpers/lifecycle.js";

const HOSTS = ["web01", "web02"];
const PUBLIC_URL = "http://127.0.0.1:8080/tidemark";
const FORK = "contributor/fleet";

const app = (version: string) => ({
  "app/systemd/app.service": "[Unit]\nDescription=app\n\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/app/current/run.sh\n",
  "app/manifest.json": JSON.stringify({ systemd: { units_enabled: ["app.service"] }, checks: [{ command: "true", timeoutSeconds: 30 }] }),
  "app/run.sh": "exec sleep infinity\n",
  "app/version": `${version}\n`,
});
const redisApp = {
  "redis/systemd/redis.service": "[Unit]\nDescription=redis\n\n[Service]\nExecStart=/bin/sleep infinity\n",
  "redis/manifest.json": JSON.stringify({ systemd: { units_enabled: ["redis.service"] } }),
};
const tree = (files: Record<string, string>, only?: string) =>
  Object.fromEntries(
    HOSTS.filter((host) => !only || host === only).flatMap((host) =>
      Object.entries(files).map(([path, content]) => [`clusters/staging/${host}/${path}`, content]),
    ),
  );

type Posted = ApiRequest & { body: { context: string; state: string; description: string; target_url?: string } };

/**
 * A pull request into a tracked branch gets a `tidemark/plan/<env>` status on
 * its head: what merging it would change against what the environment runs
 * now. Reading only: no host is contacted, nothing is deployed.
 */
describe("Plan preview on pull requests", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let fork: WorkRepo | undefined;
  let shell: HostShell;
  let operator: ReturnType<typeof operatorEnv>;
  let serve: OperatorProcess;
  let redis: Redis;
  let refs: Queue;
  let reports: Queue;
  let deployed: string;

  const statusRequests = async (sha: string) =>
    (await bed.forge!.apiRequests()).filter(
      (request): request is Posted => request.method === "POST" && request.path.endsWith(`/statuses/${sha}`),
    );
  const posted = async (sha: string) => (await statusRequests(sha)).filter((request) => request.status === 201);
  const deploymentsStarted = () => serve.logs((line) => line.msg === "staging: deployment started").length;
  /** The report queue has nothing left to post: every status Tidemark made so far has reached the forge. */
  const reportsSettled = () =>
    waitFor("the report queue to be empty", async () => {
      const counts = await reports.getJobCounts("wait", "active", "delayed", "prioritized", "waiting-children");
      return Object.values(counts).every((count) => count === 0);
    });
  /** The refs job a pull_request delivery was queued as, once it has finished. */
  const previewJob = async (number: number, since: number) => {
    const queued = await serve.waitForLog(
      (line) => line.msg === "webhook queued" && line.event === "pull_request" && line.pullRequest === number,
      30_000,
      since,
    );
    return waitFor(
      `refs job ${String(queued.job)} (pull request #${number}) to finish`,
      async () => {
        const job = await refs.getJob(String(queued.job));
        return job?.finishedOn ? job : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
  };
  /** Everything a deployment would leave on a host: releases and links, their times, the lock's note, the units. */
  const hostState = (host: string) =>
    shell.run(
      host,
      "find /var/lib/tidemark -maxdepth 4 -printf '%p %l %T@\\n' | sort; cat /var/lib/tidemark/apps/app/current/version; ls /etc/systemd/system; systemctl list-units --all --no-legend --plain 'app.service' 'redis.service'",
    );
  const hostStates = async () => Object.fromEntries(await Promise.all(HOSTS.map(async (host) => [host, await hostState(host)] as const)));
  const planStatusFor = (sha: string) =>
    waitFor(
      `the tidemark/plan/staging status of ${sha.slice(0, 7)}`,
      async () => (await posted(sha)).find((request) => request.body.context === "tidemark/plan/staging"),
      { timeoutMs: 60_000, intervalMs: 200 },
    );

  const owned = integrationLifecycle({ forge: () => bed?.forge, log: () => serve });

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ systemdHosts: 2, redis: true, forge: true }), (it) => it.down());
    work = owned.own(await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo)), (it) => it.remove());
    shell = owned.own(new HostShell(bed), (it) => it.close());
    operator = owned.own(operatorEnv(bed), (it) => it.remove());
    redis = owned.own(new Redis(bed.redis!.url, { maxRetriesPerRequest: null }), (it) => it.disconnect());
    refs = owned.own(new Queue("refs", { connection: redis, prefix: "tidemark" }), (it) => it.close());
    reports = owned.own(new Queue("report", { connection: redis, prefix: "tidemark" }), (it) => it.close());
    await work.commit(
      {
        "tidemark.yaml": bedConfig(
          bed,
          ["staging: { track: { branch: main }, tree: clusters/staging }"],
          "{ maxParallel: 2, canary: 0, maxFailures: 10 }",
        ),
        ...tree(app("v0")),
      },
      "zero",
    );
    await work.push("main");
    serve = await OperatorProcess.start("serve", reportingServeEnv(bed, operator.env, { TIDEMARK_PUBLIC_URL: PUBLIC_URL }));
    await bed.forge!.addHook(bed.forgeRepo, {
      url: `${serve.url}/webhooks/github`,
      secret: bed.webhookSecret,
      events: ["push", "pull_request"],
    });
    // What the environment runs now: v1 on both hosts, deployed by a push.
    deployed = await work.commit(tree(app("v1")), "v1");
    await work.push("main");
    await waitFor(
      "v1 to be deployed",
      async () =>
        (await posted(deployed)).some((request) => request.body.context === "tidemark/staging" && request.body.state === "success"),
      { timeoutMs: 90_000, intervalMs: 200 },
    );
    for (const host of HOSTS) expect(await shell.run(host, "cat /var/lib/tidemark/apps/app/current/version")).toBe("v1");
  });

  let pull: number;

  it("opened: one success status naming the hosts that would change, linking the plan; no host touched, nothing deployed", async () => {
    const before = await hostStates();
    const started = deploymentsStarted();
    const since = serve.lines.length;
    await work.git("checkout", "--quiet", "-b", "feature");
    await work.commit({ ...tree(app("v2"), "web01"), ...tree(redisApp, "web02") }, "web01: app v2; web02: redis");
    await work.push("feature");
    const opened = await bed.forge!.openPullRequest(bed.forgeRepo, { head: "feature" });
    pull = opened.number;
    expect(opened.headSha).toBe(await work.head());

    const status = await planStatusFor(opened.headSha);
    expect(status.body).toEqual({
      context: "tidemark/plan/staging",
      state: "success",
      description: "2 hosts would change: web01 ~app, web02 +redis; rollback available",
      target_url: `${PUBLIC_URL}/plans/staging/${opened.headSha}`,
    });
    const job = await previewJob(pull, since);
    expect(job.returnvalue).toEqual([
      { environment: "staging", action: "previewed", pullRequest: pull, commit: opened.headSha, hosts: ["web01", "web02"] },
    ]);
    await reportsSettled();

    // Exactly one status on the head: the plan; no deployment status, no deployment.
    expect(
      (await statusRequests(opened.headSha)).map((request) => `${request.body.context} ${request.body.state} ${request.status}`),
    ).toEqual(["tidemark/plan/staging success 201"]);
    expect(deploymentsStarted()).toBe(started);
    expect(await hostStates()).toEqual(before);
    for (const host of HOSTS) expect(await shell.run(host, "cat /var/lib/tidemark/apps/app/current/version")).toBe("v1");
  });

  it("synchronize with an invalid manifest: failure naming the file and the field; still no host touched", async () => {
    const before = await hostStates();
    const started = deploymentsStarted();
    const since = serve.lines.length;
    await work.commit(
      { "clusters/staging/web01/app/manifest.json": JSON.stringify({ systemd: { units_enabled: "app.service" } }) },
      "broken manifest",
    );
    await work.push("feature");
    const synced = await bed.forge!.synchronizePullRequest(bed.forgeRepo, pull);
    expect(synced.headSha).toBe(await work.head());

    const status = await planStatusFor(synced.headSha);
    expect(status.body.state).toBe("failure");
    expect(status.body.description).toMatch(/^invalid: clusters\/staging\/web01\/app\/manifest\.json: systemd\.units_enabled: \S/);
    expect(status.body.target_url).toBe(`${PUBLIC_URL}/plans/staging/${synced.headSha}`);
    const job = await previewJob(pull, since);
    expect(job.returnvalue).toEqual([
      { environment: "staging", action: "previewed", pullRequest: pull, commit: synced.headSha, invalid: 1 },
    ]);
    await reportsSettled();

    expect(
      (await statusRequests(synced.headSha)).map((request) => `${request.body.context} ${request.body.state} ${request.status}`),
    ).toEqual(["tidemark/plan/staging failure 201"]);
    expect(deploymentsStarted()).toBe(started);
    expect(await hostStates()).toEqual(before);
  });

  it("a pull request from a fork is planned the same way, on the fork's head commit, its secrets never decrypted", async () => {
    const before = await hostStates();
    const started = deploymentsStarted();
    const since = serve.lines.length;
    await bed.forge!.createRepo("contributor", "fleet");
    fork = owned.own(await WorkRepo.create(bed.forge!.pushUrl(FORK)), (it) => it.remove());
    // The fork's history is the base's main and one commit of the contributor.
    await fork.git("fetch", "--quiet", bed.forge!.cloneUrl(bed.forgeRepo), "main");
    await fork.git("checkout", "--quiet", "-b", "patch", "FETCH_HEAD");
    expect(await fork.head()).toBe(deployed);
    // A secret for a key the operator does not hold: a preview that decrypted would fail on it, and a fork could learn from that.
    const stranger = mkdtempSync(join(tmpdir(), "tidemark-stranger-"));
    let token: Buffer;
    try {
      execFileSync("age-keygen", ["-o", join(stranger, "key")], { stdio: "ignore" });
      writeFileSync(join(stranger, "plain"), "TOKEN=whatever the fork chose\n");
      const recipient = execFileSync("age-keygen", ["-y", join(stranger, "key")], { encoding: "utf8" }).trim();
      token = execFileSync("age", ["-r", recipient, join(stranger, "plain")]);
    } finally {
      rmSync(stranger, { recursive: true, force: true });
    }
    const head = await fork.commit(
      { ...tree(app("v3"), "web02"), "clusters/staging/web02/app/token.age": token },
      "web02: app v3, a token",
    );
    await fork.push("patch");

    const opened = await bed.forge!.openPullRequest(bed.forgeRepo, { head: "patch", headRepo: FORK });
    expect(opened.headSha).toBe(head);
    const status = await planStatusFor(head);
    expect(status.body).toEqual({
      context: "tidemark/plan/staging",
      state: "success",
      description: "1 host would change: web02 ~app; rollback available",
      target_url: `${PUBLIC_URL}/plans/staging/${head}`,
    });
    const job = await previewJob(opened.number, since);
    expect(job.data).toMatchObject({ kind: "pull-request", number: opened.number, head, base: "main", fork: true });
    await reportsSettled();

    expect((await statusRequests(head)).map((request) => `${request.body.context} ${request.body.state} ${request.status}`)).toEqual([
      "tidemark/plan/staging success 201",
    ]);
    expect(deploymentsStarted()).toBe(started);
    expect(await hostStates()).toEqual(before);
    // The plan page, which does not decrypt either, marks the file a secret.
    const page = await (await fetch(`${serve.url}/plans/staging/${head}`)).text();
    expect(page).toMatch(/\+ token <span class="muted">secret added<\/span>/);
  });

  it("a pull request into a branch no environment tracks gets no status", async () => {
    const since = serve.lines.length;
    await work.push(`${deployed}:refs/heads/release`);
    await work.git("checkout", "--quiet", "-b", "hotfix", deployed);
    const head = await work.commit(tree(app("v4"), "web01"), "web01: app v4, for the release branch");
    await work.push("hotfix");
    const opened = await bed.forge!.openPullRequest(bed.forgeRepo, { head: "hotfix", base: "release" });
    expect(opened.headSha).toBe(head);

    // The delivery was taken and its job ran to the end: it had nothing to plan.
    const job = await previewJob(opened.number, since);
    expect(job.data).toMatchObject({ kind: "pull-request", number: opened.number, head, base: "release" });
    expect(job.returnvalue).toEqual([]);
    expect(job.failedReason ?? "").toBe("");
    await reportsSettled();
    expect(await statusRequests(head)).toEqual([]);
    expect(serve.logs((line: LogLine) => line.pullRequest === opened.number && line.msg !== "webhook queued")).toEqual([]);
  });
});
