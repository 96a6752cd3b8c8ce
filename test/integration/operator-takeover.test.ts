import { Octokit } from "@octokit/rest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import { waitFor } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import { bedConfig, HostShell, operatorEnv } from "../helpers/host-shell.js";
import { OperatorProcess, type LogLine } from "../helpers/operator-process.js";

const app = (version: string, delay = 0) => ({
  "app/systemd/app.service": "[Unit]\nDescription=app\n\n[Service]\nExecStart=/bin/sh -c 'exec sleep infinity'\n",
  "app/manifest.json": JSON.stringify({ systemd: { units_enabled: ["app.service"] }, checks: [{ command: "sleep $(cat delay)" }] }),
  "app/version": `${version}\n`,
  "app/delay": `${delay}\n`,
});

/** Two workers as on two machines: one Redis, each its own store and mirror, one store remote between them. */
describe("tidemark worker: a deployment survives the death of its worker", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let shell: HostShell;
  const operators: Array<ReturnType<typeof operatorEnv>> = [];
  const workers: OperatorProcess[] = [];
  const workerEnvs: NodeJS.ProcessEnv[] = [];
  /** Starts again, on its own store and mirror, a worker that a test killed. */
  const revive = async () => {
    for (const [i, worker] of workers.entries()) if (worker.dead) workers[i] = await OperatorProcess.start("worker", workerEnvs[i]!);
  };

  const tree = (files: Record<string, string>) =>
    Object.fromEntries(
      bed.hosts.flatMap((host) => Object.entries(files).map(([path, content]) => [`clusters/staging/${host.name}/${path}`, content])),
    );
  const versions = () =>
    Promise.all(bed.hosts.map((host) => shell.run(host.name, "cat /var/lib/tidemark/apps/app/current/version 2>/dev/null || echo none")));
  const finished = (commit: string) => (line: LogLine) =>
    line.environment === "staging" && line.commit === commit && typeof line.outcome === "string";

  beforeAll(async () => {
    bed = await TestBed.up({ systemdHosts: 2, redis: true, forge: true });
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    shell = new HostShell(bed);
    await bed.forge!.createRepo("acme", "tidemark-store", { private: true });
    await work.commit(
      {
        "tidemark.yaml": bedConfig(bed, ["staging: { track: { branch: main }, tree: clusters/staging }"], "{ maxParallel: 1, canary: 0 }"),
        ...tree(app("0")),
      },
      "zero",
    );
    await work.push("main");
    for (let i = 0; i < 2; i++) {
      const operator = operatorEnv(bed);
      operators.push(operator);
      workerEnvs.push({
        ...operator.env,
        TIDEMARK_STORE_REMOTE: bed.forge!.pushUrl("acme/tidemark-store"),
        TIDEMARK_REDIS_URL: bed.redis!.url,
        TIDEMARK_POLL_INTERVAL: "1",
        TIDEMARK_TAKEOVER_AFTER: "3",
        TIDEMARK_SETTLE: "0.3",
        TIDEMARK_GITHUB_TOKEN: bed.forge!.token,
        TIDEMARK_GITHUB_API_URL: bed.forge!.apiUrl,
        TIDEMARK_GITHUB_WRITE_INTERVAL: "0.02",
        TIDEMARK_LOG_LEVEL: "debug",
      });
      workers.push(await OperatorProcess.start("worker", workerEnvs[i]!));
    }
  });

  afterAll(async () => {
    await OperatorProcess.stopAll();
    shell?.close();
    work?.remove();
    for (const operator of operators) operator.remove();
    await bed?.down();
  });

  it("lets the other worker finish a deployment whose worker was killed, without two applies on one host", async () => {
    await waitFor("the first deployment", async () => (await versions()).every((version) => version === "0"));
    const sha = await work.commit(tree(app("1", 3)), "one, slow checks");
    await work.push("main");
    const startedBy = await waitFor("a worker to start deploying", () =>
      workers.find((worker) => worker.lines.some((line) => line.msg === "staging: deployment started" && line.requested === sha)),
    );
    const survivor = workers.find((worker) => worker !== startedBy)!;
    const job = startedBy.lines.find((line) => line.msg === "staging: deployment started" && line.requested === sha)!.job;
    // web01 has switched and sits in its 3-second check; web02 has not started.
    await waitFor("web01 to switch", async () => (await versions())[0] === "1", { intervalMs: 50 });
    startedBy.kill("SIGKILL");
    expect(await startedBy.exited).toEqual({ code: null, signal: "SIGKILL" });

    // The same job, taken over once its lock ran out: not a new request.
    const takeover = await survivor.waitForLog((line) => line.msg === "staging: deployment started" && line.job === job, 20_000);
    expect(takeover.requested).toBe(sha);
    const done = await survivor.waitForLog(finished(sha), 30_000);
    expect(done.outcome).toBe("succeeded");
    // No host was found locked: the dead worker's SSH sessions, and with them its host locks, were gone.
    expect((done.hosts as Array<{ host: string; outcome: string }>).map((host) => host.outcome)).toEqual(["deployed", "deployed"]);
    expect(await versions()).toEqual(["1", "1"]);
    for (const host of bed.hosts)
      expect(await shell.run(host.name, "cat /var/lib/tidemark/target; cat /var/lib/tidemark/current")).toMatch(/^(\S+ \S+)\n\1$/);
    expect(survivor.logs((line) => line.msg === "staging: deployment started" && line.requested === sha)).toHaveLength(1);
  });

  /** The environment's statuses on a commit, oldest first. */
  async function statuses(sha: string): Promise<string[]> {
    const octokit = new Octokit({ baseUrl: bed.forge!.apiUrl, auth: bed.forge!.token, request: { retries: 0 } });
    const [owner, repo] = bed.forgeRepo.split("/") as [string, string];
    const { data } = await octokit.repos.listCommitStatusesForRef({ owner, repo, ref: sha, per_page: 100 });
    return data
      .filter((status) => status.context === "tidemark/staging")
      .reverse()
      .map((status) => `${status.state}: ${status.description ?? ""}`);
  }

  it("a worker stalled past its lock: each host applied once, and the commit's last status is green once both hosts run it", async () => {
    await revive();
    const sha = await work.commit(tree(app("2", 3)), "two, slow checks");
    await work.push("main");
    const started = (line: LogLine) => line.msg === "staging: deployment started" && line.requested === sha;
    const stalled = await waitFor("a worker to start deploying", () => workers.find((worker) => worker.lines.some(started)));
    await waitFor("web01 to switch", async () => (await versions())[0] === "2", { intervalMs: 50 });
    // Stopped for three times the lock: the other worker takes the job over and finds web01 locked by the stalled one.
    stalled.kill("SIGSTOP");
    const other = workers.find((worker) => worker !== stalled)!;
    await other.waitForLog(started, 20_000);
    await other.waitForLog(finished(sha), 30_000);
    stalled.kill("SIGCONT");
    await waitFor(
      "both hosts on two, target = current",
      async () =>
        (await versions()).every((version) => version === "2") &&
        (
          await Promise.all(bed.hosts.map((host) => shell.run(host.name, "cat /var/lib/tidemark/target; cat /var/lib/tidemark/current")))
        ).every((state) => /^(\S+ \S+)\n\1$/.test(state)),
      { timeoutMs: 30_000 },
    );
    await waitFor("a green last status", async () => (await statuses(sha)).at(-1)?.startsWith("success") || undefined, {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    expect((await statuses(sha)).at(-1)).toMatch(/^success: deployed to 2\/2 hosts/);
  });

  it("polls try a host again that a passing failure left behind, never one where the commit rolled back", async () => {
    const broken = await work.commit(
      { ...tree(app("3")), "clusters/staging/web02/app/systemd/app.service": "[Service]\nExecStart=/bin/sh -c 'exit 3'\n" },
      "three, broken on web02",
    );
    // web01's host lock is taken for 6 s: the deployment finds it locked, a passing failure.
    await shell.run("web01", "setsid flock /var/lib/tidemark/lock sleep 6 >/dev/null 2>&1 < /dev/null & sleep 0.2");
    await work.push("main");
    const attempts = () =>
      workers
        .flatMap((w) => w.logs(finished(broken)))
        .sort((a, b) => Number(a.time) - Number(b.time))
        .map((line) =>
          (line.hosts as Array<{ host: string; outcome: string; detail?: string }>).map((host) => `${host.host} ${host.outcome}`),
        );
    // Each poll tries again while web01 is locked (the rollout stops at the first failure, so web02 waits too); then web02's unit fails.
    const last = await waitFor("the attempt after the lock", () => attempts().find((hosts) => hosts[0] === "web01 deployed"), {
      timeoutMs: 30_000,
    });
    expect(last).toEqual(["web01 deployed", "web02 rolled-back"]);
    expect(attempts().slice(0, -1).length).toBeGreaterThan(0);
    for (const before of attempts().slice(0, -1)) expect(before).toEqual(["web01 unreachable", "web02 skipped"]);
    // Nothing is behind any more: later polls find three current and ask for nothing.
    const polls = (w: OperatorProcess) => w.lines.filter((line) => line.msg === "staging: current" && line.trigger === "poll").length;
    const before = workers.map(polls);
    const tries = attempts().length;
    await waitFor("three more polls by each worker", () => workers.every((w, i) => polls(w) >= before[i]! + 3) || undefined, {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    expect(attempts()).toHaveLength(tries);
    expect(await versions()).toEqual(["3", "2"]);
    expect(await shell.run("web02", "systemctl is-active app.service")).toBe("active");

    const fixed = await work.commit(
      {
        "clusters/staging/web02/app/systemd/app.service":
          "[Unit]\nDescription=app\n\n[Service]\nExecStart=/bin/sh -c 'exec sleep infinity'\n",
        "clusters/staging/web02/app/version": "4\n",
      },
      "four, web02 fixed",
    );
    await work.push("main");
    await waitFor("the deployment of four", () => workers.some((w) => w.lines.some(finished(fixed))), { timeoutMs: 30_000 });
    expect(workers.flatMap((w) => w.logs(finished(fixed))).map((line) => line.outcome)).toEqual(["succeeded"]);
    expect(await versions()).toEqual(["3", "4"]);
  });
});
