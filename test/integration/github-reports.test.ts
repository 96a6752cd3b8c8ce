import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import type { ApiRequest } from "../bed/forge/github-api.js";
import { waitFor } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import { bedConfig, HostShell, operatorEnv, reportingServeEnv } from "../helpers/host-shell.js";
import { OperatorProcess, type LogLine } from "../helpers/operator-process.js";
import { tidemark } from "../helpers/run-cli.js";
import { integrationLifecycle } from "../helpers/lifecycle.js";

const HOSTS = ["web01", "web02"];
const GATE = "/run/tidemark-test-gate";
const PUBLIC_URL = "http://127.0.0.1:8080/tidemark";

const app = (version: string, { run = "exec sleep infinity", gated = false } = {}) => ({
  "app/systemd/app.service": "[Unit]\nDescription=app\n\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/app/current/run.sh\n",
  "app/manifest.json": JSON.stringify({
    systemd: { units_enabled: ["app.service"] },
    checks: [{ command: "sh check.sh", timeoutSeconds: 120 }],
  }),
  "app/check.sh": gated ? `while [ ! -e ${GATE} ]; do sleep 0.1; done\n` : "true\n",
  "app/run.sh": `${run}\n`,
  "app/version": `${version}\n`,
});
const tree = (files: Record<string, string>, only?: string) =>
  Object.fromEntries(
    HOSTS.filter((host) => !only || host === only).flatMap((host) =>
      Object.entries(files).map(([path, content]) => [`clusters/staging/${host}/${path}`, content]),
    ),
  );

/** What a person sees on the commit: every status posted to it, in order, as "context state description". */
type Posted = ApiRequest & { body: { context: string; state: string; description: string; target_url?: string } };

describe("reports to GitHub: commit statuses and Deployments, through their own queue", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let shell: HostShell;
  let operator: ReturnType<typeof operatorEnv>;
  let serve: OperatorProcess;
  let serveEnv: NodeJS.ProcessEnv;

  const statusRequests = async (sha: string) =>
    (await bed.forge!.apiRequests()).filter(
      (request): request is Posted => request.method === "POST" && request.path.endsWith(`/statuses/${sha}`),
    );
  const statuses = async (sha: string) =>
    (await statusRequests(sha))
      .filter((request) => request.status === 201)
      .map(({ body }) => `${body.context} ${body.state} ${body.description}`);
  /** Waits until the commit's `tidemark/staging` status is final (not pending), with `count` statuses in all: the per-host ones are posted before it. */
  const finalStatuses = (sha: string, count: number) =>
    waitFor(
      `the statuses of ${sha.slice(0, 7)}`,
      async () => {
        const seen = await statuses(sha);
        return seen.length >= count &&
          seen.some((line) => line.startsWith("tidemark/staging ") && !line.startsWith("tidemark/staging pending"))
          ? seen
          : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
  const finished = (sha: string) => (line: LogLine) =>
    line.environment === "staging" && line.commit === sha && typeof line.outcome === "string";
  const push = async (files: Record<string, string>, message: string) => {
    const sha = await work.commit(files, message);
    await work.push("main");
    return sha;
  };

  const owned = integrationLifecycle({ forge: () => bed?.forge, log: () => serve });

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ systemdHosts: 2, redis: true, forge: true }), (it) => it.down());
    work = owned.own(await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo)), (it) => it.remove());
    shell = owned.own(new HostShell(bed), (it) => it.close());
    operator = owned.own(operatorEnv(bed), (it) => it.remove());
    await work.commit(
      {
        "tidemark.yaml": bedConfig(
          bed,
          [
            "staging: { track: { branch: main }, tree: clusters/staging }",
            "production: { track: { tag: production }, tree: clusters/production }",
          ],
          "{ maxParallel: 2, canary: 0, maxFailures: 10 }",
        ),
        ...tree(app("v0")),
      },
      "zero",
    );
    await work.push("main");
    serveEnv = reportingServeEnv(bed, operator.env, { TIDEMARK_PUBLIC_URL: PUBLIC_URL });
    serve = await OperatorProcess.start("serve", serveEnv);
    await bed.forge!.addHook(bed.forgeRepo, { url: `${serve.url}/webhooks/github`, secret: bed.webhookSecret });
  });

  beforeEach(async () => {
    await bed.forge!.setFaults([]);
  });

  it("a good deploy: queued, deploying, one status per host, then deployed to 2/2 hosts, and a GitHub deployment that retires the one before", async () => {
    const first = await push(tree(app("v1")), "v1");
    const seen = await finalStatuses(first, 7);
    // Every host's final status is posted before the environment's: a script that waits for tidemark/staging reads final hosts.
    expect(seen).toEqual([
      "tidemark/staging pending queued for staging",
      "tidemark/staging pending deploying to 2 hosts",
      "tidemark/staging/web01 pending deploying",
      "tidemark/staging/web02 pending deploying",
      `tidemark/staging/web01 success deployed ${first.slice(0, 7)}`,
      `tidemark/staging/web02 success deployed ${first.slice(0, 7)}`,
      "tidemark/staging success deployed to 2/2 hosts",
    ]);
    const [final] = (await statusRequests(first)).filter((request) => request.body.state === "success");
    const done = await serve.waitForLog(finished(first));
    expect(final!.body.target_url).toBe(`${PUBLIC_URL}/deployments/${String(done.deployment)}`);

    const second = await push(tree(app("v2")), "v2");
    await finalStatuses(second, 7);
    const deployments = await waitFor("both GitHub deployments to be final", async () => {
      const requests = (await bed.forge!.apiRequests()).filter(
        (request) => request.operationId === "repos/create-deployment-status" && request.status === 201,
      );
      return requests.length >= 4 ? requests : undefined;
    });
    expect(deployments.map((request) => (request.body as { state: string }).state)).toEqual([
      "in_progress",
      "success",
      "in_progress",
      "success",
    ]);
    const created = (await bed.forge!.apiRequests()).filter((request) => request.operationId === "repos/create-deployment");
    expect(created.map((request) => (request.body as { ref: string; environment: string }).ref)).toEqual([first, second]);
    // GitHub's Environments view: the first deployment is inactive now, the second is what runs.
    const list = async (id: number) =>
      (await (
        await fetch(`${bed.forge!.apiUrl}/repos/${bed.forgeRepo}/deployments/${id}/statuses`, {
          headers: { authorization: `token ${bed.forge!.token}` },
        })
      ).json()) as Array<{ state: string }>;
    const ids = await Promise.all(
      created.map(
        async (request) =>
          (
            (await (
              await fetch(`${bed.forge!.apiUrl}/repos/${bed.forgeRepo}/deployments?sha=${(request.body as { ref: string }).ref}`, {
                headers: { authorization: `token ${bed.forge!.token}` },
              })
            ).json()) as Array<{ id: number }>
          )[0]!.id,
      ),
    );
    expect((await list(ids[0]!))[0]!.state).toBe("inactive");
    expect((await list(ids[1]!))[0]!.state).toBe("success");
  });

  it("one host auto-rolls back: failure naming the unit and the commit it went back to; the other host keeps the new version", async () => {
    const before = await work.head();
    const sha = await push(tree(app("v3", { run: "exit 3" }), "web02"), "v3, broken on web02");
    const seen = await finalStatuses(sha, 6);
    expect(seen).toEqual([
      "tidemark/staging pending queued for staging",
      "tidemark/staging pending deploying to 1 host",
      "tidemark/staging/web02 pending deploying",
      "tidemark/staging/web01 success unchanged: already runs this config",
      `tidemark/staging/web02 failure rolled-back: app.service failed (exit-code); rolled back to ${before.slice(0, 7)}`,
      `tidemark/staging failure web02: app.service failed (exit-code); rolled back to ${before.slice(0, 7)}`,
    ]);
    expect(await shell.run("web02", "cat /var/lib/tidemark/apps/app/current/version")).toBe("v2");
  });

  it("an invalid config tree: error naming the file and the field, nothing deployed", async () => {
    const sha = await push(
      { "clusters/staging/web01/app/manifest.json": JSON.stringify({ systemd: { units_enabled: "app.service" } }) },
      "broken manifest",
    );
    const seen = await waitFor("the error status", async () => {
      const lines = await statuses(sha);
      return lines.length >= 2 ? lines : undefined;
    });
    expect(seen).toHaveLength(2);
    expect(seen[0]).toBe("tidemark/staging pending queued for staging");
    expect(seen[1]).toMatch(
      /^tidemark\/staging error invalid config: clusters\/staging\/web01\/app\/manifest\.json: systemd\.units_enabled: /,
    );
    expect(await shell.run("web01", "cat /var/lib/tidemark/apps/app/current/version")).toBe("v2");
  });

  it("a superseded commit gets a final status naming the commit that replaced it", async () => {
    for (const host of HOSTS) await shell.run(host, `rm -f ${GATE}`);
    const slow = await push(tree(app("v4", { gated: true })), "v4, held open");
    await serve.waitForLog((line) => line.msg === "staging: deployment started" && line.requested === slow, 30_000);
    await waitFor("web01 to be in its check", async () => (await statuses(slow)).includes("tidemark/staging pending deploying to 2 hosts"));
    const skipped = await push(tree(app("v5")), "v5");
    const newest = await push(tree(app("v6")), "v6");
    await waitFor("both pushes queued", async () => (await statuses(newest)).length >= 1 && (await statuses(skipped)).length >= 1);
    for (const host of HOSTS) await shell.run(host, `touch ${GATE}`);
    await finalStatuses(newest, 7);
    expect(await statuses(skipped)).toEqual([
      "tidemark/staging pending queued for staging",
      `tidemark/staging success superseded by ${newest.slice(0, 7)}, deployed in its place`,
    ]);
  });

  it("GitHub answering 502 three times: the deployment goes on, the statuses arrive once it recovers", async () => {
    await bed.forge!.setFaults([{ kind: "status", status: 502, times: 3, path: "/statuses/" }]);
    const sha = await push(tree(app("v7")), "v7");
    const done = await serve.waitForLog(finished(sha), 60_000);
    const seen = await finalStatuses(sha, 7);
    expect(seen.slice(0, 2)).toEqual(["tidemark/staging pending queued for staging", "tidemark/staging pending deploying to 2 hosts"]);
    const requests = await statusRequests(sha);
    expect(requests.filter((request) => request.status === 502)).toHaveLength(3);
    // Octokit's retry backs off 1 + 4 + 9 s: the deployment was over before its first status got through.
    expect(done.time as number).toBeLessThan(requests.find((request) => request.status === 201)!.at);
  });

  it("a status held back by GitHub errors never overwrites a newer one posted meanwhile", async () => {
    const sha = await work.commit(tree(app("v8a")), "v8a");
    // The first status of this commit fails through Octokit's three retries: its job comes back after BullMQ's backoff.
    await bed.forge!.setFaults([{ kind: "status", status: 502, times: 4, path: `/statuses/${sha}` }]);
    await work.push("main");
    await finalStatuses(sha, 6);
    const dropped = await serve.waitForLog(
      (line) =>
        line.msg === "report dropped: a newer one for the same status was posted first" && line.key === `status:${sha}:tidemark/staging`,
      60_000,
    );
    expect(dropped.attempt).toBe(2);
    const seen = await statuses(sha);
    expect(seen[0]).toBe("tidemark/staging pending deploying to 2 hosts");
    expect(seen.filter((line) => line.startsWith("tidemark/staging ")).at(-1)).toBe("tidemark/staging success deployed to 2/2 hosts");
    expect(seen).not.toContain("tidemark/staging pending queued for staging");
    const metrics = await (await fetch(`${serve.url}/metrics`)).text();
    expect(metrics).toMatch(/^tidemark_github_reports_total\{kind="status",result="dropped"\} 1$/m);
    expect(metrics).toMatch(/^tidemark_github_reports_total\{kind="status",result="failed"\} 1$/m);
  }, 90_000);

  it("403 with rate-limit headers: waits for the reset and asks once more, no storm", async () => {
    await bed.forge!.setFaults([{ kind: "rate-limit", resetInSeconds: 3, times: 1, path: "/statuses/" }]);
    const sha = await push(tree(app("v8")), "v8");
    await finalStatuses(sha, 7);
    const requests = await statusRequests(sha);
    expect(requests.map((request) => request.status)).toEqual([403, 201, 201, 201, 201, 201, 201, 201]);
    expect(requests[1]!.at - requests[0]!.at).toBeGreaterThanOrEqual(2000);
  });

  it("a host's final status that GitHub refuses through Octokit's retries holds the environment's back until it is posted", async () => {
    const sha = await work.commit(tree(app("v8c")), "v8c: web02's final status refused four times");
    // Octokit tries each request four times: the batch's first attempt fails on web02's final status and waits out BullMQ's backoff.
    await bed.forge!.setFaults([
      { kind: "status", status: 502, times: 4, path: `/statuses/${sha}`, body: '^(?=.*"tidemark/staging/web02")(?=.*"state":"success")' },
    ]);
    const since = serve.lines.length;
    await work.push("main");
    await finalStatuses(sha, 7);
    await serve.waitForLog(
      (line) => line.msg === "report to GitHub failed; it is tried again" && line.key === `status:${sha}:tidemark/staging/web02`,
      10_000,
      since,
    );
    const requests = await statusRequests(sha);
    expect(requests.filter((request) => request.status === 502)).toHaveLength(4);
    const posted = requests
      .filter((request) => request.status === 201)
      .map(({ body, at }) => ({ line: `${body.context} ${body.state} ${body.description}`, at }));
    expect(posted.map(({ line }) => line)).toEqual([
      "tidemark/staging pending queued for staging",
      "tidemark/staging pending deploying to 2 hosts",
      "tidemark/staging/web01 pending deploying",
      "tidemark/staging/web02 pending deploying",
      `tidemark/staging/web01 success deployed ${sha.slice(0, 7)}`,
      `tidemark/staging/web02 success deployed ${sha.slice(0, 7)}`,
      "tidemark/staging success deployed to 2/2 hosts",
    ]);
    // In the stand-in's log: web02's final status went out after ~10 s of BullMQ's backoff, and the environment's only after it.
    const [web01, web02, environment] = posted.slice(-3);
    expect(web02!.at - web01!.at).toBeGreaterThanOrEqual(9000);
    expect(environment!.at).toBeGreaterThanOrEqual(web02!.at);
  }, 90_000);

  it("a push that touches only production: staging's history stays as it was, and the commit hears one success, no change for staging", async () => {
    const history = async () => (await tidemark(["history", "staging", "--json"], operator.env)).stdout;
    const before = await history();
    const sha = await push({ "clusters/production/web01/app/version": "p1\n" }, "production only");
    const done = await serve.waitForLog((line) => line.msg === "staging: no-change" && line.sourceCommit === sha, 60_000);
    expect(done.superseded).toEqual([]);
    const seen = await waitFor("the final status", async () => {
      const lines = await statuses(sha);
      return lines.some((line) => !line.includes(" pending ")) ? lines : undefined;
    });
    expect(seen).toEqual(["tidemark/staging pending queued for staging", "tidemark/staging success no change for staging"]);
    const [final] = (await statusRequests(sha)).filter((request) => request.body.state === "success");
    expect(final!.body.target_url).toBe(`${PUBLIC_URL}/environments/staging`);
    expect(await history()).toBe(before);
    expect(
      (await bed.forge!.apiRequests()).filter(
        (request) => request.operationId === "repos/create-deployment" && (request.body as { ref: string }).ref === sha,
      ),
    ).toEqual([]);
    const metrics = await (await fetch(`${serve.url}/metrics`)).text();
    expect(metrics).toMatch(/^tidemark_deployments_total\{environment="staging",outcome="no-change"\} 1$/m);
  });

  it("a GitHub App instead of a token: statuses are posted with an installation token", async () => {
    const credentials = await bed.forge!.createApp(bed.forgeRepo);
    const keyFile = join(dirname(operator.env.TIDEMARK_STORE!), "app.pem");
    writeFileSync(keyFile, credentials.privateKey, { mode: 0o600 });
    serve.kill("SIGTERM");
    await serve.exited;
    const { TIDEMARK_GITHUB_TOKEN: _token, ...withoutToken } = serveEnv;
    serve = await OperatorProcess.start("serve", {
      ...withoutToken,
      TIDEMARK_GITHUB_APP_ID: String(credentials.appId),
      TIDEMARK_GITHUB_APP_KEY: keyFile,
      TIDEMARK_GITHUB_APP_INSTALLATION: String(credentials.installationId),
      TIDEMARK_LISTEN: new URL(serve.url).host,
    });
    const sha = await push(tree(app("v9")), "v9");
    await finalStatuses(sha, 7);
    const requests = await statusRequests(sha);
    expect(requests.map((request) => request.auth)).toEqual(Array(7).fill("installation"));
    expect(
      (await bed.forge!.apiRequests())
        .filter((request) => request.operationId === "apps/create-installation-access-token")
        .map((request) => [request.auth, request.status]),
    ).toEqual([["jwt", 201]]);
  });
});
