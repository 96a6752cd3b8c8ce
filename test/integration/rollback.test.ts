import { beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import type { ApiRequest } from "../bed/forge/github-api.js";
import { waitFor } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import { bedConfig, HostShell, operatorEnv, reportingServeEnv } from "../helpers/host-shell.js";
import { OperatorProcess, type LogLine } from "../helpers/operator-process.js";
import { tidemark } from "../helpers/run-cli.js";
import { integrationLifecycle } from "../helpers/lifecycle.js";

const ENVIRONMENTS = { staging: ["web01", "web02"], production: ["web03"] } as const;
type Environment = keyof typeof ENVIRONMENTS;

const app = (version: string, { run = "exec sleep infinity" } = {}) => ({
  "app/systemd/app.service": "[Unit]\nDescription=app\n\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/app/current/run.sh\n",
  "app/manifest.json": JSON.stringify({ systemd: { units_enabled: ["app.service"] } }),
  "app/run.sh": `${run}\n`,
  "app/version": `${version}\n`,
  // Enough bytes that an upload could not hide in the noise.
  "app/payload.txt": `${version}\n`.repeat(4096),
});

type HistoryJson = Array<{
  id: string;
  sourceCommit: string;
  sourceRef: string;
  trigger: string;
  returnTo?: { id: string; sourceCommit: string };
  pin?: string;
  hosts: Array<{ host: string; outcome: string }>;
}>;

describe("the ways back: git revert, moving the pin, tidemark rollback and unpin", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let shell: HostShell;
  let operator: ReturnType<typeof operatorEnv>;
  let cliEnv: NodeJS.ProcessEnv;
  let serve: OperatorProcess;

  const tree = (environment: Environment, files: Record<string, string>, only?: string) =>
    Object.fromEntries(
      ENVIRONMENTS[environment]
        .filter((host) => !only || host === only)
        .flatMap((host) => Object.entries(files).map(([path, content]) => [`clusters/${environment}/${host}/${path}`, content])),
    );
  const version = (host: string) => shell.run(host, "cat /var/lib/tidemark/apps/app/current/version 2>/dev/null || echo none");
  const versions = (environment: Environment) => Promise.all(ENVIRONMENTS[environment].map(version));
  const waitVersions = (environment: Environment, expected: string[]) =>
    waitFor(
      `${environment} to run ${expected.join(", ")}`,
      async () => JSON.stringify(await versions(environment)) === JSON.stringify(expected),
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  const history = async (environment: Environment) =>
    JSON.parse((await tidemark(["history", environment, "--json"], cliEnv)).stdout) as HistoryJson;
  const finished = (environment: Environment, commit: string) => (line: LogLine) =>
    line.environment === environment && line.commit === commit && typeof line.outcome === "string";
  const envStatuses = async (sha: string, environment: Environment) =>
    (await bed.forge!.apiRequests())
      .filter(
        (request): request is ApiRequest & { body: { context: string; state: string; description: string } } =>
          request.method === "POST" && request.status === 201 && request.path.endsWith(`/statuses/${sha}`),
      )
      .filter((request) => request.body.context === `tidemark/${environment}`)
      .map(({ body }) => `${body.state} ${body.description}`);
  const finalStatus = (sha: string, environment: Environment) =>
    waitFor(`the final tidemark/${environment} status of ${sha.slice(0, 7)}`, async () =>
      (await envStatuses(sha, environment)).find((line) => !line.startsWith("pending")),
    );
  /** The release dirs on a host, with their change times: a new upload would add one or touch one. */
  const releases = (host: string) =>
    shell.run(host, "find /var/lib/tidemark/apps/app -mindepth 1 -maxdepth 1 -type d -printf '%f %C@\\n' | sort");

  const owned = integrationLifecycle({ forge: () => bed?.forge, log: () => serve });

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ systemdHosts: 3, redis: true, forge: true }), (it) => it.down());
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
        ...tree("staging", app("s0")),
        ...tree("production", app("p0")),
      },
      "zero",
    );
    await work.push("main");
    // The CLI pushes tags and reverts: its repo URL carries the forge's credentials.
    cliEnv = { ...operator.env, TIDEMARK_REPO: bed.forge!.pushUrl(bed.forgeRepo), TIDEMARK_SETTLE: "0.3" };
    serve = await OperatorProcess.start(
      "serve",
      reportingServeEnv(bed, operator.env, { TIDEMARK_POLL_INTERVAL: "1", TIDEMARK_LOG_LEVEL: "debug", TIDEMARK_HOST_STATUSES: "false" }),
    );
    await bed.forge!.addHook(bed.forgeRepo, { url: `${serve.url}/webhooks/github`, secret: bed.webhookSecret });
  });

  it("git revert of a bad commit is reported as a rollback and uploads nothing", async () => {
    const good = await work.commit(tree("staging", app("s1")), "s1");
    await work.push("main");
    await waitVersions("staging", ["s1", "s1"]);
    const goodDeployment = await serve.waitForLog(finished("staging", good));
    const bad = await work.commit(
      { ...tree("staging", app("s2")), ...tree("staging", app("s2", { run: "exit 3" }), "web02") },
      "s2, broken on web02",
    );
    await work.push("main");
    await serve.waitForLog(finished("staging", bad));
    expect(await versions("staging")).toEqual(["s2", "s1"]);
    const before = await releases("web01");

    await work.git("revert", "--no-edit", "HEAD");
    await work.push("main");
    const revert = await work.head();
    const done = await serve.waitForLog(finished("staging", revert));
    expect(await versions("staging")).toEqual(["s1", "s1"]);
    expect(done.returnTo).toEqual({ id: goodDeployment.deployment, sourceCommit: good });
    // Measured by the operator as it sends files, and seen on the host: not a byte, not a new release dir.
    expect(done.hosts).toEqual([
      { host: "web01", outcome: "deployed", durationMs: expect.any(Number) as number, uploadedBytes: 0 },
      { host: "web02", outcome: "unchanged" },
    ]);
    expect(await releases("web01")).toBe(before);
    expect((await history("staging"))[0]).toMatchObject({
      sourceCommit: revert,
      returnTo: { id: goodDeployment.deployment, sourceCommit: good },
    });
    expect(await finalStatus(revert, "staging")).toBe(
      `success return to ${String(goodDeployment.deployment)} (${good.slice(0, 7)}): deployed to 2/2 hosts`,
    );
  });

  it("tidemark rollback production v1.2 moves the pin tag on the forge and the host follows", async () => {
    const v12 = await work.commit(tree("production", app("p12")), "p12");
    await work.tag("v1.2");
    await work.tag("production");
    await work.push("main", "v1.2", "production");
    await waitVersions("production", ["p12"]);
    const first = await serve.waitForLog(finished("production", v12));
    await work.commit(tree("production", app("p13")), "p13");
    await work.tag("production", { force: true });
    await work.git("push", "--quiet", "--force", "origin", "refs/tags/production");
    await waitVersions("production", ["p13"]);

    const rolled = await tidemark(["rollback", "production", "v1.2", "--yes"], cliEnv);
    expect({ code: rolled.code, stderr: rolled.stderr }).toEqual({ code: 0, stderr: "" });
    expect(rolled.stdout).toContain(`moved production to ${v12.slice(0, 7)} (v1.2)`);
    expect((await work.git("ls-remote", "origin", "refs/tags/production")).split("\t")[0]).toBe(v12);
    await waitVersions("production", ["p12"]);
    const done = await serve.waitForLog((line) => finished("production", v12)(line) && line.deployment !== first.deployment);
    expect(done.returnTo).toEqual({ id: first.deployment, sourceCommit: v12 });
  });

  it("with the forge down, rollback deploys the recorded tree from the store and pins the environment until unpinned", async () => {
    const [s1Deployment] = (await history("staging")).filter((entry) => entry.hosts.every((host) => host.outcome === "deployed"));
    const s3 = await work.commit(tree("staging", app("s3")), "s3");
    await work.push("main");
    await waitVersions("staging", ["s3", "s3"]);
    await serve.waitForLog(finished("staging", s3));

    await bed.forge!.setGitAvailable(false);
    const rolled = await tidemark(["rollback", "staging", s1Deployment!.id, "--yes"], cliEnv).finally(() =>
      bed.forge!.setGitAvailable(true),
    );
    expect(rolled.code).toBe(0);
    expect(rolled.stderr).toContain("using the local mirror as of its last fetch");
    expect(rolled.stdout).toContain(`staging is pinned (return to ${s1Deployment!.id} (${s1Deployment!.sourceCommit.slice(0, 7)}))`);
    expect(await versions("staging")).toEqual(["s1", "s1"]);
    const status = await tidemark(["status", "staging"], cliEnv);
    expect(status.stdout).toContain(`pinned: return to ${s1Deployment!.id}`);

    // A push while pinned: recorded (a pending status says why), not deployed; polls keep it in mind.
    const s4 = await work.commit(tree("staging", app("s4")), "s4");
    await work.push("main");
    const held = await serve.waitForLog(
      (line) =>
        line.environment === "staging" &&
        line.status === "stays" &&
        typeof line.reason === "string" &&
        line.reason.includes(`${s4.slice(0, 7)} waits for tidemark unpin staging`),
    );
    expect(held.reason).toContain("staging is pinned");
    expect(
      await waitFor("the pinned status", async () => (await envStatuses(s4, "staging")).find((line) => line.includes("pinned"))),
    ).toMatch(/^pending not deployed: staging is pinned \(return to .*\); tidemark unpin staging deploys it$/);
    await serve.waitForLog(
      (line) => line.environment === "staging" && line.trigger === "poll" && line.action === "requested" && line.commit === s4,
    );
    expect(await versions("staging")).toEqual(["s1", "s1"]);
    expect((await tidemark(["deploy", "staging", "--yes"], cliEnv)).stderr).toContain("staging is pinned");

    const unpinned = await tidemark(["unpin", "staging"], cliEnv);
    expect(unpinned.stdout).toContain("staging unpinned");
    await waitVersions("staging", ["s4", "s4"]);
    expect(await finalStatus(s4, "staging")).toBe("success deployed to 2/2 hosts");
    // Polls asked for s4 again and again while it was held back; its commit heard of it once.
    expect((await envStatuses(s4, "staging")).map((line) => line.split(":")[0])).toEqual([
      "pending queued for staging",
      "pending not deployed",
      "pending deploying to 2 hosts",
      "success deployed to 2/2 hosts",
    ]);
    const entries = await history("staging");
    expect(entries.slice(0, 3).map((entry) => entry.trigger)).toEqual(["poll", "unpin", "rollback"]);
    expect(entries[2]).toMatchObject({
      sourceCommit: s1Deployment!.sourceCommit,
      pin: `return to ${s1Deployment!.id} (${s1Deployment!.sourceCommit.slice(0, 7)})`,
    });
  });

  it("rollback --revert pushes a commit whose tree is the target's; the operator deploys it as a rollback", async () => {
    const [live] = await history("staging");
    await work.commit(tree("staging", app("s5")), "s5");
    await work.push("main");
    await waitVersions("staging", ["s5", "s5"]);
    const rolled = await tidemark(["rollback", "staging", live!.sourceCommit, "--revert", "--yes"], cliEnv);
    expect({ code: rolled.code, stderr: rolled.stderr }).toEqual({ code: 0, stderr: "" });
    await waitVersions("staging", ["s4", "s4"]);
    await work.git("pull", "--quiet", "--ff-only", "origin", "main");
    expect((await work.git("log", "-1", "--format=%s")).trim()).toBe(`Roll back staging to ${live!.sourceCommit.slice(0, 7)}`);
    expect((await work.git("rev-parse", "HEAD^{tree}")).trim()).toBe((await work.git("rev-parse", `${live!.sourceCommit}^{tree}`)).trim());
    const done = await serve.waitForLog(finished("staging", await work.head()));
    expect(done.returnTo).toEqual({ id: live!.id, sourceCommit: live!.sourceCommit });
  });
});
