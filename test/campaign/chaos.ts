import { TestBed } from "../bed/bed.js";
import { sleep, waitFor } from "../bed/proc.js";
import { HostShell, operatorEnv } from "../helpers/host-shell.js";
import { OperatorProcess } from "../helpers/operator-process.js";
import { ms } from "../helpers/report.js";
import { duplicatedApplies, finalStatus, forgeOctokit, hostState, isHalfSwitched, statusHistory } from "./checks.js";
import { cloneStore, Pusher, seedFleet, splitFleet } from "./fleet.js";
import type { Scenario } from "./scenario.js";

const ENVIRONMENTS = 5;
const HOSTS = 10;
const PUSHERS = 50;
const PUSHES = 500;
const WORKERS = 3;
const TAKEOVER_SECONDS = 5;
const POLL_SECONDS = 3;

/**
 * 500 pushes from 50 people at once across 5 environments and 10 systemd
 * hosts, while one of the three operator processes (serve, two workers) is
 * SIGKILLed every few seconds and Redis (AOF on) is restarted twice. Webhooks
 * that hit a dead Redis are answered 503 and never sent again: polls have to
 * catch up. In the end every environment's last commit must run on its hosts.
 */
const chaos: Scenario = async (log) => {
  const bed = await TestBed.up({ systemdHosts: HOSTS, redis: { aof: true }, forge: true });
  const shell = new HostShell(bed);
  const operators = Array.from({ length: WORKERS }, () => operatorEnv(bed));
  const pushers: Pusher[] = [];
  const findings: string[] = [];
  try {
    const layout = splitFleet(bed.hosts, ENVIRONMENTS);
    const work = await seedFleet(bed, layout);
    work.remove();
    await bed.forge!.createRepo("acme", "tidemark-store", { private: true });
    const storeRemote = bed.forge!.pushUrl("acme/tidemark-store");
    const common = {
      TIDEMARK_STORE_REMOTE: storeRemote,
      TIDEMARK_REDIS_URL: bed.redis!.url,
      TIDEMARK_POLL_INTERVAL: String(POLL_SECONDS),
      TIDEMARK_TAKEOVER_AFTER: String(TAKEOVER_SECONDS),
      TIDEMARK_SETTLE: "0.3",
      TIDEMARK_GITHUB_TOKEN: bed.forge!.token,
      TIDEMARK_GITHUB_API_URL: bed.forge!.apiUrl,
      TIDEMARK_GITHUB_WRITE_INTERVAL: "0.02",
    };
    const serveEnv = { ...operators[0]!.env, ...common, TIDEMARK_WEBHOOK_SECRET: bed.webhookSecret, TIDEMARK_LISTEN: "127.0.0.1:0" };
    // serve listens on a fixed port so that the forge's hook still reaches it after a restart.
    const first = await OperatorProcess.start("serve", serveEnv);
    const listen = new URL(first.url).host;
    const start = (i: number) =>
      i === 0
        ? OperatorProcess.start("serve", { ...serveEnv, TIDEMARK_LISTEN: listen })
        : OperatorProcess.start("worker", { ...operators[i]!.env, ...common });
    const processes: OperatorProcess[] = [first, ...(await Promise.all([1, 2].map(start)))];
    const retired: OperatorProcess[] = [];
    await bed.forge!.addHook(bed.forgeRepo, { url: `${first.url}/webhooks/github`, secret: bed.webhookSecret });

    const octokit = forgeOctokit(bed);
    const envs = [...layout.environments.keys()];
    await waitFor(
      "v0 on every host",
      async () => (await Promise.all(bed.hosts.map((host) => hostState(shell, host.name, "app")))).every((state) => state.version === "v0"),
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    log(`bed up; ${envs.length} environments at v0; pushing`);

    // The pushers: 10 per environment, 10 pushes each, each on top of the branch as it is then, in turns per branch.
    for (let i = 0; i < PUSHERS; i++) pushers.push(await Pusher.clone(bed, envs[i % envs.length]!));
    let pushesDone = 0;
    const last = new Map<string, { sha: string; version: string; at: number }>();
    const pushing = Promise.all(
      pushers.map(async (pusher, i) => {
        const env = envs[i % envs.length]!;
        for (let n = 0; n < PUSHES / PUSHERS; n++) {
          const version = `p${i}-${n}`;
          const { sha } = await pusher.push(layout.environments.get(env)!, version);
          pushesDone++;
          if (pushesDone % 50 === 0) log(`${pushesDone} pushes`);
          last.set(env, { sha, version, at: Date.now() });
          await sleep(Math.random() * 400);
        }
      }),
    );

    // The faults, while the pushes go on: a SIGKILL every 2-5 s, Redis restarted at a third and two thirds.
    let kills = 0;
    let redisRestarts = 0;
    let stopFaults = false;
    const faults = (async () => {
      while (!stopFaults) {
        await sleep(2000 + Math.random() * 3000);
        if (stopFaults) break;
        if ((redisRestarts === 0 && pushesDone > PUSHES / 3) || (redisRestarts === 1 && pushesDone > (2 * PUSHES) / 3)) {
          log(`restarting Redis (${pushesDone} pushes done)`);
          await bed.redis!.stop();
          await sleep(1500);
          await bed.redis!.start();
          redisRestarts++;
          continue;
        }
        const victim = Math.floor(Math.random() * processes.length);
        processes[victim]!.kill("SIGKILL");
        await processes[victim]!.exited;
        retired.push(processes[victim]!);
        kills++;
        await sleep(500 + Math.random() * 1500);
        processes[victim] = await start(victim);
      }
    })();
    await pushing;
    const lastPush = Math.max(...[...last.values()].map((entry) => entry.at));
    stopFaults = true;
    await faults;
    log(`${pushesDone} pushes, ${kills} SIGKILLs, ${redisRestarts} Redis restarts; waiting for the final statuses`);

    // Every environment's last commit: its final status, then what its hosts run.
    const logs = () => [...retired, ...processes];
    const outcomesOf = (sha: string) => logs().flatMap((p) => p.logs((line) => line.commit === sha && typeof line.outcome === "string"));
    let settled = lastPush;
    const notGreenFirst: string[] = [];
    for (const env of envs) {
      const final = last.get(env)!;
      try {
        const first = await finalStatus(bed, octokit, final.sha, env, 180_000);
        if (first.state !== "success") {
          const hosts = outcomesOf(final.sha).flatMap((line) =>
            (line.hosts as Array<{ host: string; outcome: string; detail?: string }>).filter(
              (host) => host.outcome !== "deployed" && host.outcome !== "unchanged",
            ),
          );
          notGreenFirst.push(
            `${env}: ${first.state}, ${[...new Set(hosts.map((host) => `${host.host} ${host.outcome}: ${host.detail ?? ""}`))].join("; ")}`,
          );
        }
        // A failure that a later attempt (a poll, a restarted worker sharing its record) repairs ends green: wait for the last word.
        const green = await waitFor(
          `a green last status for ${env}`,
          async () => ((await statusHistory(bed, octokit, final.sha, env)).at(-1)?.startsWith("success") ? Date.now() : undefined),
          { timeoutMs: 120_000, intervalMs: 200 },
        ).catch(() => null);
        if (green === null)
          findings.push(
            `${env}: the last commit ${final.sha.slice(0, 7)} never got a green status: ${(await statusHistory(bed, octokit, final.sha, env)).at(-1) ?? "none"}`,
          );
        settled = Math.max(settled, green ?? first.seenAt);
      } catch (error) {
        findings.push(`${env}: no final status for the last commit ${final.sha.slice(0, 7)}: ${(error as Error).message}`);
      }
    }
    // A host the last deployment could not finish is taken again by the next poll: give the polls a minute.
    const behind = async () => {
      const states = await Promise.all(bed.hosts.map((host) => hostState(shell, host.name, "app")));
      return {
        states,
        behind: [...layout.environments].flatMap(([env, hosts]) =>
          hosts
            .filter((host) => states.find((s) => s.host === host.name)!.version !== last.get(env)!.version)
            .map((host) => `${host.name} (${env})`),
        ),
      };
    };
    const firstLook = (await behind()).behind;
    const { states, behind: lostHosts } = await waitFor(
      "every host on its environment's last commit",
      async () => {
        const look = await behind();
        return look.behind.length === 0 ? look : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 1000 },
    ).catch(() => behind());
    const lost = lostHosts.length;
    for (const host of lostHosts) findings.push(`${host} never got its environment's last commit`);
    const halfSwitched = states.filter(isHalfSwitched);
    for (const state of halfSwitched) findings.push(`${state.host}: target ${state.target} but current ${state.current}`);
    // A unit started twice for one version: an apply that a takeover did again (the store counts it once).
    const starts = await Promise.all(
      bed.hosts.map(async (host) =>
        (await shell.run(host.name, "cat /var/log/campaign-starts 2>/dev/null || true")).split("\n").filter(Boolean),
      ),
    );
    const restartedTwice = starts.reduce((sum, lines) => sum + lines.length - new Set(lines).size, 0);

    for (const process of processes) await process.stop(30_000);
    const store = cloneStore(storeRemote);
    const applies = await duplicatedApplies(store.path, envs).finally(() => store.remove());
    findings.push(...applies.examples.map((example) => `applied twice: ${example}`));
    const deliveries = await bed.forge!.deliveries();
    const refused = deliveries.filter((delivery) => delivery.status === null || delivery.status >= 300).length;
    const started = logs().flatMap((p) => p.logs((line) => typeof line.msg === "string" && line.msg.endsWith(": deployment started")));
    const deployed = logs().flatMap((p) => p.logs((line) => typeof line.deployment === "string" && typeof line.outcome === "string"));
    const superseded = logs()
      .flatMap((p) => p.logs((line) => Array.isArray(line.superseded)))
      .reduce((sum, line) => sum + (line.superseded as unknown[]).length, 0);
    const violations = await bed.forge!.violations();
    if (violations.length > 0)
      findings.push(
        `the GitHub stand-in recorded ${violations.length} requests that GitHub would refuse: ${JSON.stringify(violations.slice(0, 3))}`,
      );

    return {
      title: "500 pushes, SIGKILLed workers, Redis restarted twice",
      what: `${PUSHERS} pushers (${PUSHERS / ENVIRONMENTS} per environment) made ${PUSHES} pushes, each on top of its branch as it was then (the pushers of one branch take turns, as in a merge queue), to ${ENVIRONMENTS} environments of ${HOSTS / ENVIRONMENTS} systemd hosts each, with 0–0.4 s between a pusher's pushes. Three operator processes ran: \`tidemark serve\` (webhooks, polls every ${POLL_SECONDS} s, a worker) and two \`tidemark worker\`s, each with its own mirror and store and one shared store remote. Every 2–5 s one of the three was SIGKILLed and started again 0.5–2 s later; Redis (AOF, everysec) was stopped for 1.5 s and started again twice. BullMQ's lock is ${TAKEOVER_SECONDS} s (\`--takeover-after\`).`,
      deployments: pushesDone,
      lost,
      duplicated: applies.duplicated,
      halfSwitched: halfSwitched.length,
      finalStatusMs: settled - lastPush,
      figures: [
        ["operator processes SIGKILLed", String(kills)],
        ["Redis restarts", String(redisRestarts)],
        ["webhook deliveries not accepted (Redis or serve down)", `${refused} of ${deliveries.length}`],
        ["deployments started (takeovers included)", String(started.length)],
        ["deployments that finished", String(deployed.length)],
        ["pushed commits reported superseded", String(superseded)],
        ["unit started twice for one version (an apply redone after a kill)", String(restartedTwice)],
        ["from the last push to the last green status", ms(settled - lastPush)],
        [
          "last commits whose first final status was not green, and why (each turned green later)",
          notGreenFirst.length === 0 ? "0" : notGreenFirst.join(" | "),
        ],
        [
          "hosts not yet on their last commit at its final status, caught up by a later poll",
          `${firstLook.length - lost}${firstLook.length > 0 ? ` (${firstLook.join(", ")})` : ""}`,
        ],
      ],
      findings,
    };
  } finally {
    await OperatorProcess.stopAll();
    for (const pusher of pushers) pusher.remove();
    for (const operator of operators) operator.remove();
    shell.close();
    await bed.down();
  }
};

export default chaos;
