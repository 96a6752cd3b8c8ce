import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import { waitFor } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import { HostShell, operatorEnv } from "../helpers/host-shell.js";
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

  const tree = (files: Record<string, string>) => Object.fromEntries(bed.hosts.flatMap((host) => Object.entries(files).map(([path, content]) => [`clusters/staging/${host.name}/${path}`, content])));
  const versions = () => Promise.all(bed.hosts.map((host) => shell.run(host.name, "cat /var/lib/tidemark/apps/app/current/version 2>/dev/null || echo none")));
  const finished = (commit: string) => (line: LogLine) => line.environment === "staging" && line.commit === commit && typeof line.outcome === "string";

  beforeAll(async () => {
    bed = await TestBed.up({ systemdHosts: 2, redis: true, forge: true });
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    shell = new HostShell(bed);
    await bed.forge!.createRepo("acme", "tidemark-store", { private: true });
    const hosts = bed.hosts.map((host) => `  ${host.name}: { address: ${host.address}, port: ${host.port}, hostKey: "${host.hostKey}" }`);
    await work.commit({ "tidemark.yaml": ["environments:", "  staging: { track: { branch: main }, tree: clusters/staging }", "hosts:", ...hosts, "rollout: { maxParallel: 1, canary: 0 }", ""].join("\n"), ...tree(app("0")) }, "zero");
    await work.push("main");
    for (let i = 0; i < 2; i++) {
      const operator = operatorEnv(bed);
      operators.push(operator);
      workers.push(await OperatorProcess.start("worker", { ...operator.env, TIDEMARK_STORE_REMOTE: bed.forge!.pushUrl("acme/tidemark-store"), TIDEMARK_REDIS_URL: bed.redis!.url, TIDEMARK_POLL_INTERVAL: "1", TIDEMARK_TAKEOVER_AFTER: "3", TIDEMARK_SETTLE: "0.3" }));
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
    const startedBy = await waitFor("a worker to start deploying", () => workers.find((worker) => worker.lines.some((line) => line.msg === "staging: deployment started" && line.requested === sha)));
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
    for (const host of bed.hosts) expect(await shell.run(host.name, "cat /var/lib/tidemark/target; cat /var/lib/tidemark/current")).toMatch(/^(\S+ \S+)\n\1$/);
    expect(survivor.logs((line) => line.msg === "staging: deployment started" && line.requested === sha)).toHaveLength(1);
  });
});
