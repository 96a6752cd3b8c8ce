import { TestBed } from "../bed/bed.js";
import { sleep, waitFor } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import { HostShell, operatorEnv } from "../helpers/host-shell.js";
import { OperatorProcess } from "../helpers/operator-process.js";
import { ms } from "../helpers/report.js";
import { duplicatedApplies, finalStatus, forgeOctokit, hostState, isHalfSwitched, statusHistory } from "./checks.js";
import { cloneStore } from "./fleet.js";
import type { Scenario } from "./scenario.js";

const TAKEOVER_SECONDS = 3;
const STALL_SECONDS = 3 * TAKEOVER_SECONDS;
const CHECK_SECONDS = 3;

/**
 * A worker whose event loop stops for three times BullMQ's lock while it
 * applies a host (SIGSTOP: no timer, no socket read, nothing runs, as in a
 * long stall), then goes on (SIGCONT). The other worker takes the job over;
 * the host lock, held by the stalled worker's SSH session, must let exactly
 * one of them apply each host.
 */
const stall: Scenario = async (log) => {
  const bed = await TestBed.up({ systemdHosts: 2, redis: true, forge: true });
  const shell = new HostShell(bed);
  const operators = [operatorEnv(bed), operatorEnv(bed)];
  const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
  const findings: string[] = [];
  try {
    await bed.forge!.createRepo("acme", "tidemark-store", { private: true });
    const storeRemote = bed.forge!.pushUrl("acme/tidemark-store");
    const app = (version: string) =>
      Object.fromEntries(
        bed.hosts.flatMap((host) =>
          Object.entries({
            "app/systemd/app.service":
              "[Unit]\nDescription=app\n\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/app/current/run.sh\n",
            "app/run.sh": 'echo "$(cat /var/lib/tidemark/apps/app/current/version)" >> /var/log/campaign-starts\nexec sleep infinity\n',
            "app/manifest.json": JSON.stringify({
              systemd: { units_enabled: ["app.service"] },
              checks: [{ command: `sleep ${CHECK_SECONDS}` }],
            }),
            "app/version": `${version}\n`,
          }).map(([path, content]) => [`envs/e0/${host.name}/${path}`, content]),
        ),
      );
    const hosts = bed.hosts.map((host) => `  ${host.name}: { address: ${host.address}, port: ${host.port}, hostKey: "${host.hostKey}" }`);
    await work.commit(
      {
        "tidemark.yaml": [
          "environments:",
          "  e0: { track: { branch: main }, tree: envs/e0 }",
          "hosts:",
          ...hosts,
          "rollout: { maxParallel: 1, canary: 0, maxFailures: 2 }",
          "",
        ].join("\n"),
        ...app("v0"),
      },
      "v0",
    );
    await work.push("main");
    const env = (i: number) => ({
      ...operators[i]!.env,
      TIDEMARK_STORE_REMOTE: storeRemote,
      TIDEMARK_REDIS_URL: bed.redis!.url,
      TIDEMARK_POLL_INTERVAL: "1",
      TIDEMARK_TAKEOVER_AFTER: String(TAKEOVER_SECONDS),
      TIDEMARK_SETTLE: "0.3",
      TIDEMARK_GITHUB_TOKEN: bed.forge!.token,
      TIDEMARK_GITHUB_API_URL: bed.forge!.apiUrl,
      TIDEMARK_GITHUB_WRITE_INTERVAL: "0.02",
    });
    const workers = [await OperatorProcess.start("worker", env(0)), await OperatorProcess.start("worker", env(1))];
    const versions = async () =>
      (await Promise.all(bed.hosts.map((host) => hostState(shell, host.name, "app")))).map((state) => state.version);
    await waitFor("v0 on both hosts", async () => (await versions()).every((version) => version === "v0"), {
      timeoutMs: 60_000,
      intervalMs: 200,
    });

    const sha = await work.commit(app("v1"), "v1");
    await work.push("main");
    const started = (line: { msg: string; requested?: unknown }) => line.msg === "e0: deployment started" && line.requested === sha;
    const stalled = await waitFor("a worker to start v1", () => workers.find((worker) => worker.lines.some(started)), {
      timeoutMs: 30_000,
      intervalMs: 20,
    });
    const other = workers.find((worker) => worker !== stalled)!;
    // web01 has switched and sits in its check: its host lock is held by the worker about to stall.
    await waitFor("web01 to switch to v1", async () => (await versions())[0] === "v1", { timeoutMs: 30_000, intervalMs: 50 });
    const stalledAt = Date.now();
    stalled.kill("SIGSTOP");
    log(`worker ${stalled.pid} stopped for ${STALL_SECONDS} s, lock ${TAKEOVER_SECONDS} s`);
    const takeover = await other.waitForLog(started, 30_000).then(
      () => Date.now() - stalledAt,
      () => null,
    );
    if (takeover === null) findings.push("the other worker never took the job over");
    await sleep(Math.max(0, STALL_SECONDS * 1000 - (Date.now() - stalledAt)));
    stalled.kill("SIGCONT");
    log("worker continued");

    // The takeover finds web01 locked and says so; the stalled worker then finishes web01. Wait for the hosts to settle, then for the last word on v1.
    const octokit = forgeOctokit(bed);
    const first = await finalStatus(bed, octokit, sha, "e0", 60_000);
    const settledStates = async () => {
      const states = await Promise.all(bed.hosts.map((host) => hostState(shell, host.name, "app")));
      return states.every((state) => state.version === "v1" && !isHalfSwitched(state)) ? states : undefined;
    };
    const states = await waitFor("both hosts on v1, target = current", settledStates, { timeoutMs: 60_000, intervalMs: 200 }).catch(() =>
      Promise.all(bed.hosts.map((host) => hostState(shell, host.name, "app"))),
    );
    const settled = await waitFor(
      "v1's status to say success",
      async () => {
        const history = await statusHistory(bed, octokit, sha, "e0");
        return history.at(-1)?.startsWith("success") ? { history, at: Date.now() } : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    ).catch(async () => ({ history: await statusHistory(bed, octokit, sha, "e0"), at: null }));
    if (settled.at === null) findings.push(`v1's last status is not success: ${settled.history.at(-1) ?? "none"}`);
    const lost = states.filter((state) => state.version !== "v1").length;
    for (const state of states.filter((s) => s.version !== "v1")) findings.push(`${state.host} runs ${state.version}, not v1`);
    const starts = await Promise.all(
      bed.hosts.map(
        async (host) => (await shell.run(host.name, "cat /var/log/campaign-starts")).split("\n").filter((line) => line === "v1").length,
      ),
    );
    const doubled = starts.filter((count) => count > 1).length;
    starts.forEach((count, i) => count !== 1 && findings.push(`${bed.hosts[i]!.name}'s unit started ${count} times for v1`));
    const halfSwitched = states.filter(isHalfSwitched).length;
    const lockedOut = workers.flatMap((worker) =>
      worker.logs(
        (line) => Array.isArray(line.hosts) && (line.hosts as Array<{ detail?: string }>).some((host) => host.detail?.startsWith("locked")),
      ),
    );
    for (const worker of workers) await worker.stop();
    const store = cloneStore(storeRemote);
    const applies = await duplicatedApplies(store.path, ["e0"]).finally(() => store.remove());
    findings.push(...applies.examples.map((example) => `applied twice: ${example}`));
    return {
      title: "Event-loop stall longer than BullMQ's lock",
      what: `Two \`tidemark worker\`s (lock ${TAKEOVER_SECONDS} s), two systemd hosts, one at a time, each with a ${CHECK_SECONDS}-second check. While web01 was in its check, the worker deploying stopped for ${STALL_SECONDS} s (SIGSTOP, then SIGCONT).`,
      deployments: 1,
      lost,
      duplicated: applies.duplicated + doubled,
      halfSwitched,
      finalStatusMs: settled.at === null ? null : settled.at - stalledAt,
      figures: [
        ["the other worker took the job over after", takeover === null ? "never" : ms(takeover)],
        ["deployments that found a host locked by the stalled worker", String(lockedOut.length)],
        ["unit starts for v1, per host", starts.join(", ")],
        ["v1's first final status, after", `${first.state}: ${first.description} (${ms(first.seenAt - stalledAt)})`],
        ["v1's statuses, in order", settled.history.join(" → ")],
      ],
      findings,
    };
  } finally {
    await OperatorProcess.stopAll();
    work.remove();
    for (const operator of operators) operator.remove();
    shell.close();
    await bed.down();
  }
};

export default stall;
