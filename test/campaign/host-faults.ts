import { TestBed } from "../bed/bed.js";
import { waitFor } from "../bed/proc.js";
import { TcpProxy } from "../bed/tcp-proxy.js";
import { WorkRepo } from "../bed/work-repo.js";
import { HostShell, operatorEnv, reportingServeEnv } from "../helpers/host-shell.js";
import { OperatorProcess, type LogLine } from "../helpers/operator-process.js";
import { ms } from "../helpers/report.js";
import { duplicatedApplies, forgeOctokit, hostState, isHalfSwitched, statusHistory, type HostState } from "./checks.js";
import type { Scenario } from "./scenario.js";

/**
 * Host faults under `tidemark serve` as it runs in production (webhooks from
 * the forge, a 2 s poll, statuses to the GitHub stand-in), on 3 systemd hosts,
 * each reached through a TCP proxy on loopback that can cut or slow it:
 * a) the connection cut mid-upload, b) cut after the switch and before the
 * check, c) a slow host, d) a full disk, e) a reboot mid-upload. Each fault
 * meets a push; once it is lifted, the polls must bring the host level with
 * no further push. Counted at the end of each sub-case, on the hosts: lost,
 * half-switched; from the store: duplicated applies.
 */
const ENV = "staging";
const HOSTS = ["web01", "web02", "web03"] as const;
type Host = (typeof HOSTS)[number];
/** Each fault has its host: web01 is cut, web02 is slowed and rebooted, web03's disk fills up. */
const CUT: Host = "web01";
const SLOW: Host = "web02";
const FULL: Host = "web03";
const POLL_SECONDS = 2;
const WAIT_MS = 60_000;
const MiB = 1024 * 1024;

type AppOptions = { bigMiB?: number; startDelay?: number };

/** The app every host runs, enabled at boot; `startDelay` makes its restart last that long (a window between switch and check). */
function app(version: string, { bigMiB = 0, startDelay = 0 }: AppOptions = {}): Record<string, string> {
  return {
    "app/systemd/app.service": `[Unit]\nDescription=app\n\n[Service]\n${startDelay > 0 ? `ExecStartPre=/bin/sleep ${startDelay}\n` : ""}ExecStart=/bin/sh /var/lib/tidemark/apps/app/current/run.sh\n\n[Install]\nWantedBy=multi-user.target\n`,
    "app/manifest.json": JSON.stringify({ systemd: { units_enabled: ["app.service"] } }),
    "app/run.sh": "exec sleep infinity\n",
    "app/version": `${version}\n`,
    ...(bigMiB > 0 ? { "app/data.bin": `${version} `.padEnd(64, "x").repeat((bigMiB * MiB) / 64) } : {}),
  };
}

interface Outcome {
  host: string;
  outcome: string;
  detail?: string;
  durationMs?: number;
}

const scenario: Scenario = async (log) => {
  const bed = await TestBed.up({ systemdHosts: HOSTS.length, redis: true, forge: true, persistentDisks: true });
  const shell = new HostShell(bed);
  const operator = operatorEnv(bed);
  const octokit = forgeOctokit(bed);
  const proxies = new Map<string, TcpProxy>();
  let work: WorkRepo | undefined;
  let serve: OperatorProcess | undefined;
  const figures: Array<[string, string]> = [];
  const findings: string[] = [];
  const totals = { pushes: 0, lost: 0, halfSwitched: 0, finalStatusMs: 0 };
  try {
    for (const host of HOSTS) proxies.set(host, await TcpProxy.start(bed.host(host)));
    const proxy = (host: Host) => proxies.get(host)!;
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    const repo = work;
    // d) web03's /var/lib/tidemark is a 16 MiB disk of its own, from before its first deployment.
    await shell.run(FULL, "mkdir -p /var/lib/tidemark && mount -t tmpfs -o size=16m tidemark-disk /var/lib/tidemark");
    serve = await OperatorProcess.start(
      "serve",
      reportingServeEnv(bed, operator.env, { TIDEMARK_POLL_INTERVAL: String(POLL_SECONDS), TIDEMARK_LOG_LEVEL: "debug" }),
    );
    const operatorLog = serve;
    await bed.forge!.addHook(bed.forgeRepo, { url: `${serve.url}/webhooks/github`, secret: bed.webhookSecret });

    const inventory = HOSTS.map(
      (host) => `  ${host}: { address: 127.0.0.1, port: ${proxy(host).port}, hostKey: "${bed.host(host).hostKey}" }`,
    );
    const config = [
      "environments:",
      `  ${ENV}: { track: { branch: main }, tree: clusters/${ENV} }`,
      "hosts:",
      ...inventory,
      "rollout: { canary: 0, maxFailures: 10 }",
      "",
    ].join("\n");
    /** The config tree at `version`; `only` gives some hosts more. web01's unit starts slowly from b) on. */
    const tree = (version: string, only: Partial<Record<Host, AppOptions>> = {}) =>
      Object.fromEntries(
        HOSTS.flatMap((host) =>
          Object.entries(app(version, only[host])).map(([path, content]) => [`clusters/${ENV}/${host}/${path}`, content]),
        ),
      );

    async function push(files: Record<string, string>, message: string): Promise<{ sha: string; at: number; mark: number }> {
      const sha = await repo.commit(files, message);
      const mark = operatorLog.lines.length;
      await repo.push("main");
      totals.pushes++;
      return { sha, at: Date.now(), mark };
    }
    const phase = (host: Host, name: string, since: number) =>
      operatorLog.waitForLog((line) => line.environment === ENV && line.host === host && line.phase === name, WAIT_MS, since);
    /** The first deployment of `sha` after `since`: its log line, with every host's outcome. */
    const deployment = (sha: string, since: number) =>
      operatorLog.waitForLog((line) => line.environment === ENV && line.commit === sha && Array.isArray(line.hosts), WAIT_MS, since);
    const outcomeOf = (line: LogLine, host: Host) => (line.hosts as Outcome[]).find((entry) => entry.host === host);
    const started = (from: number, to = operatorLog.lines.length) =>
      operatorLog.lines.slice(from, to).filter((line) => line.msg === `${ENV}: deployment started`);
    const desiredTree = async (sha: string, host: Host) => (await repo.git("rev-parse", `${sha}:clusters/${ENV}/${host}`)).trim();
    const note = (ok: boolean, finding: string) => {
      if (!ok) findings.push(finding);
      return ok;
    };
    const say = (outcome: Outcome | undefined) => `${outcome?.outcome ?? "?"} ("${(outcome?.detail ?? "").replace(/\s+/g, " ")}")`;

    /** A host runs the commit's tree and version, with target = current. */
    async function levelOn(sha: string, host: Host, version: string): Promise<HostState | undefined> {
      const state = await hostState(shell, host, "app");
      return state.current.split(" ")[1] === (await desiredTree(sha, host)) && state.version === version && !isHalfSwitched(state)
        ? state
        : undefined;
    }

    /**
     * The fault is lifted: the polls, and nothing else, must bring `behind`
     * level on `sha` and the commit's status to success. Then every host is
     * checked: what it runs (lost), target = current (half-switched), its app.
     */
    async function converge(
      label: string,
      sha: string,
      version: string,
      behind: Host,
      liftedAt: number,
      liftMark: number,
    ): Promise<string> {
      const level = await waitFor(`${behind} level on ${sha.slice(0, 7)}`, () => levelOn(sha, behind, version), {
        timeoutMs: WAIT_MS,
        intervalMs: 250,
      }).then(
        () => Date.now() - liftedAt,
        () => null,
      );
      note(level !== null, `${label}: the polls did not bring ${behind} to ${sha.slice(0, 7)} within ${ms(WAIT_MS)} of the fault's end`);
      const green = await waitFor(
        `${sha.slice(0, 7)}'s status to say success`,
        async () => ((await statusHistory(bed, octokit, sha, ENV)).at(-1)?.startsWith("success") ? Date.now() - liftedAt : undefined),
        { timeoutMs: WAIT_MS, intervalMs: 200 },
      ).catch(() => null);
      const history = await statusHistory(bed, octokit, sha, ENV);
      note(green !== null, `${label}: ${sha.slice(0, 7)}'s last status is not success: ${history.at(-1) ?? "none"}`);
      if (green !== null) totals.finalStatusMs = Math.max(totals.finalStatusMs, green);
      let lost = 0;
      let halfSwitched = 0;
      for (const host of HOSTS) {
        const state = await hostState(shell, host, "app");
        const want = await desiredTree(sha, host);
        if (state.current.split(" ")[1] !== want || state.version !== version) {
          lost++;
          findings.push(
            `${label}: ${host} does not run ${sha.slice(0, 7)} (current "${state.current}", version ${state.version}; want tree ${want.slice(0, 7)}, version ${version})`,
          );
        }
        if (isHalfSwitched(state)) {
          halfSwitched++;
          findings.push(`${label}: ${host} left with target "${state.target}" ≠ current "${state.current}"`);
        }
        const active = await shell.run(host, "systemctl is-active app.service || true");
        note(active === "active", `${label}: app.service on ${host} is ${active}`);
      }
      totals.lost += lost;
      totals.halfSwitched += halfSwitched;
      const retries = started(liftMark).filter((line) => line.trigger === "poll").length;
      const states = history.map((status) => status.slice(0, status.indexOf(":")));
      return `${behind} level after ${level === null ? "never" : ms(level)}, status success after ${green === null ? "never" : ms(green)} (${retries} deployment${retries === 1 ? "" : "s"} started by polls); ${sha.slice(0, 7)}'s statuses: ${states.join(" → ")}; lost ${lost}, half-switched ${halfSwitched}`;
    }

    // The fleet starts at version 0.
    const zero = await push({ "tidemark.yaml": config, ...tree("0") }, "version 0");
    await waitFor(
      "the fleet on version 0",
      async () => (await Promise.all(HOSTS.map((host) => levelOn(zero.sha, host, "0")))).every(Boolean),
      { timeoutMs: WAIT_MS, intervalMs: 250 },
    );
    log(`the fleet runs version 0 (${ms(Date.now() - zero.at)})`);

    // a) The connection to web01 is cut 2 MiB into an 8 MiB upload, and stays cut a few polls long.
    {
      const label = "a) cut mid-upload";
      const before = await hostState(shell, CUT, "app");
      const cut = proxy(CUT).cutAfter(2 * MiB, "up");
      const fault = await push(tree("a", { [CUT]: { bigMiB: 8 } }), "a: a big upload to web01");
      const line = await deployment(fault.sha, fault.mark);
      await cut;
      const outcome = outcomeOf(line, CUT);
      const phases = operatorLog.lines
        .slice(fault.mark, operatorLog.lines.indexOf(line))
        .filter((entry) => entry.host === CUT && typeof entry.phase === "string")
        .map((entry) => entry.phase as string);
      note(
        outcome?.outcome === "failed" && /nothing switched: web01: the connection was lost/.test(outcome.detail ?? ""),
        `${label}: ${CUT} ended ${JSON.stringify(outcome)}, not failed with nothing switched and the connection lost`,
      );
      note(phases.at(-1) === "upload", `${label}: the cut came after ${phases.join(", ")}, not in the upload`);
      for (const host of HOSTS)
        if (host !== CUT)
          note(outcomeOf(line, host)?.outcome === "deployed", `${label}: ${host} did not deploy: ${JSON.stringify(outcomeOf(line, host))}`);
      await new Promise((resolve) => setTimeout(resolve, 2 * POLL_SECONDS * 1000));
      const during = await hostState(shell, CUT, "app");
      note(
        during.current === before.current && during.version === before.version,
        `${label}: ${CUT}'s current moved to "${during.current}" (${during.version}) while it could not be reached`,
      );
      const attempts = started(fault.mark).length;
      log(`${label}: ${CUT} ${say(outcome)}`);
      const liftMark = operatorLog.lines.length;
      proxy(CUT).restore();
      const after = await converge(label, fault.sha, "a", CUT, Date.now(), liftMark);
      figures.push([
        label,
        `${CUT} ${say(outcome)} after ${phases.join(">")}; ${attempts} deployment(s) while cut; current and version unchanged: ${during.current === before.current && during.version === before.version}, target ≠ current meanwhile: ${isHalfSwitched(during)}; other hosts deployed; from the fault's end: ${after}`,
      ]);
    }

    // b) The connection to web01 is cut once it has switched, while its unit restarts (2 s), before the check.
    {
      const label = "b) cut after switch, before check";
      const fault = await push(tree("b", { [CUT]: { startDelay: 2 } }), "b: web01's unit starts slowly");
      await phase(CUT, "restart", fault.mark);
      proxy(CUT).cut();
      const line = await deployment(fault.sha, fault.mark);
      const outcome = outcomeOf(line, CUT);
      note(
        outcome?.outcome === "failed" && /after the switch/.test(outcome.detail ?? "") && /connection was lost/.test(outcome.detail ?? ""),
        `${label}: ${CUT} ended ${JSON.stringify(outcome)}: not a failure that says the connection was lost after the switch`,
      );
      note(
        !operatorLog.lines
          .slice(fault.mark, operatorLog.lines.indexOf(line))
          .some((entry) => entry.host === CUT && entry.phase === "check"),
        `${label}: ${CUT} reached its check: the cut came too late`,
      );
      await new Promise((resolve) => setTimeout(resolve, 2 * POLL_SECONDS * 1000));
      const during = await hostState(shell, CUT, "app");
      log(
        `${label}: ${CUT} ${say(outcome)}; on the host: target "${during.target}", current "${during.current}", version ${during.version}`,
      );
      const liftMark = operatorLog.lines.length;
      proxy(CUT).restore();
      const after = await converge(label, fault.sha, "b", CUT, Date.now(), liftMark);
      figures.push([
        label,
        `${CUT} ${say(outcome)}; on the host while cut: version ${during.version}, target ≠ current: ${isHalfSwitched(during)}; from the fault's end: ${after}`,
      ]);
    }

    // c) web02 is slow: 100 ms more each way on every chunk.
    {
      const label = "c) slow host (+100 ms each way)";
      proxy(SLOW).throttle({ latencyMs: 100 });
      const fault = await push(tree("c", { [CUT]: { startDelay: 2 } }), "c: every host");
      const line = await deployment(fault.sha, fault.mark);
      proxy(SLOW).throttle({});
      const durations = Object.fromEntries(HOSTS.map((host) => [host, outcomeOf(line, host)?.durationMs ?? Number.NaN]));
      note(line.outcome === "succeeded", `${label}: the deployment ${String(line.outcome)}: ${JSON.stringify(line.hosts)}`);
      // web01 restarts for 2 s by design since b); web03 is the host to compare with.
      note(
        durations[FULL]! * 2 < durations[SLOW]!,
        `${label}: ${SLOW} took ${ms(durations[SLOW]!)}, ${FULL} ${ms(durations[FULL]!)}: held back, or not slowed`,
      );
      const after = await converge(label, fault.sha, "c", SLOW, fault.at, fault.mark);
      log(`${label}: ${HOSTS.map((host) => `${host} ${ms(durations[host]!)}`).join(", ")}`);
      figures.push([
        label,
        `per host: ${HOSTS.map((host) => `${host} ${ms(durations[host]!)}`).join(", ")} (web01's unit takes 2 s to start since b); from the push: ${after}`,
      ]);
    }

    // d) web03's disk is full when a change comes.
    {
      const label = "d) disk full";
      await shell.run(FULL, "dd if=/dev/zero of=/var/lib/tidemark/filler bs=64k 2>/dev/null; true");
      const before = await hostState(shell, FULL, "app");
      const fault = await push(
        tree("d", { [CUT]: { startDelay: 2 }, [SLOW]: { bigMiB: 1 }, [FULL]: { bigMiB: 1 } }),
        "d: 1 MiB more on web02 and web03",
      );
      const line = await deployment(fault.sha, fault.mark);
      const outcome = outcomeOf(line, FULL);
      note(
        outcome?.outcome === "failed" && /disk is full/.test(outcome.detail ?? "") && /free space on web03/.test(outcome.detail ?? ""),
        `${label}: ${FULL} ended ${JSON.stringify(outcome)}: not an error that says the disk is full and what to do`,
      );
      for (const host of HOSTS)
        if (host !== FULL)
          note(outcomeOf(line, host)?.outcome === "deployed", `${label}: ${host} did not deploy: ${JSON.stringify(outcomeOf(line, host))}`);
      await new Promise((resolve) => setTimeout(resolve, 2 * POLL_SECONDS * 1000));
      const during = await hostState(shell, FULL, "app");
      note(
        during.current === before.current && during.version === before.version,
        `${label}: ${FULL}'s current moved to "${during.current}"`,
      );
      note(!isHalfSwitched(during), `${label}: ${FULL} has target "${during.target}" ≠ current "${during.current}" while its disk is full`);
      const attempts = started(fault.mark).length;
      const full = operatorLog.lines
        .slice(fault.mark)
        .filter(
          (entry) => entry.commit === fault.sha && Array.isArray(entry.hosts) && /disk is full/.test(outcomeOf(entry, FULL)?.detail ?? ""),
        ).length;
      log(`${label}: ${FULL} ${say(outcome)}`);
      const liftMark = operatorLog.lines.length;
      await shell.run(FULL, "rm -f /var/lib/tidemark/filler");
      const after = await converge(label, fault.sha, "d", FULL, Date.now(), liftMark);
      figures.push([
        label,
        `${FULL} ${say(outcome)}; ${attempts} deployment(s) while full, ${full} of them failing on the full disk; current unchanged and target = current meanwhile: ${during.current === before.current && !isHalfSwitched(during)}; other hosts deployed; from the space freed: ${after}`,
      ]);
    }

    // e) web02 reboots (a clean poweroff, its disk kept) while an 8 MiB upload to it runs at 4 MiB/s.
    {
      const label = "e) reboot mid-upload";
      proxy(SLOW).throttle({ bytesPerSecond: 4 * MiB });
      const fault = await push(tree("e", { [CUT]: { startDelay: 2 }, [SLOW]: { bigMiB: 8 }, [FULL]: { bigMiB: 1 } }), "e: 8 MiB to web02");
      await phase(SLOW, "upload", fault.mark);
      const rebootAt = Date.now();
      const rebooted = bed.reboot(SLOW).then(() => Date.now() - rebootAt);
      const line = await deployment(fault.sha, fault.mark);
      const rebootMs = await rebooted;
      shell.forget(SLOW);
      proxy(SLOW).throttle({});
      const outcome = outcomeOf(line, SLOW);
      note(
        outcome?.outcome === "failed" && /nothing switched: web02: the connection was lost/.test(outcome.detail ?? ""),
        `${label}: ${SLOW} ended ${JSON.stringify(outcome)}, not failed with nothing switched and the connection lost (deployed: the upload was over before it went down)`,
      );
      // Back from the reboot: a whole release runs (the last good one, unless a poll's retry was quicker), its app started at boot.
      const booted = await hostState(shell, SLOW, "app");
      const active = await shell.run(SLOW, "systemctl is-active app.service || true");
      note(
        active === "active" && ["d", "e"].includes(booted.version),
        `${label}: after the reboot ${SLOW} runs version ${booted.version}, app.service ${active}`,
      );
      log(`${label}: ${SLOW} ${say(outcome)}; rebooted in ${ms(rebootMs)}`);
      const after = await converge(label, fault.sha, "e", SLOW, rebootAt + rebootMs, operatorLog.lines.length);
      figures.push([
        label,
        `${SLOW} ${say(outcome)}; reboot ${ms(rebootMs)}; after it: version ${booted.version}, app.service ${active}, target ≠ current: ${isHalfSwitched(booted)}; from the host's return: ${after}`,
      ]);
    }

    const duplicated = await duplicatedApplies(operator.env.TIDEMARK_STORE!, [ENV]);
    findings.push(...duplicated.examples.map((example) => `duplicated apply: ${example}`));
    const deployments = started(0).length;
    figures.push([
      "deployments",
      `${totals.pushes} pushes, ${deployments} deployments run (${started(0).filter((line) => line.trigger === "poll").length} started by polls)`,
    ]);
    figures.push([
      "proxies",
      HOSTS.map((host) => `${host}: ${proxy(host).counts.accepted} connections, ${proxy(host).counts.cut} cut`).join("; "),
    ]);
    return {
      title: "Host faults: cuts, a slow host, a full disk, a reboot",
      what: `3 systemd hosts behind loopback TCP proxies (cut after N bytes or on demand, latency, bandwidth), \`tidemark serve\` with webhooks, a ${POLL_SECONDS} s poll and statuses to the GitHub stand-in. Each sub-case pushes a change that meets the fault, lifts the fault, and waits for the polls to bring the host level, with no further push; counts are taken on the hosts after that. Final status: the slowest sub-case, from the fault's end (c: from the push) to the commit's status turning success.`,
      deployments,
      lost: totals.lost,
      duplicated: duplicated.duplicated,
      halfSwitched: totals.halfSwitched,
      finalStatusMs: totals.finalStatusMs,
      figures,
      findings,
    };
  } catch (error) {
    // Polls that found nothing new are most of the log: left out.
    if (serve)
      log(
        `tidemark serve's log (last lines, quiet polls left out):\n${serve.lines
          .filter((line) => line.action !== "current")
          .slice(-60)
          .map((line) => JSON.stringify(line))
          .join("\n")}`,
      );
    throw error;
  } finally {
    await OperatorProcess.stopAll();
    for (const proxy of proxies.values()) await proxy.close();
    shell.close();
    work?.remove();
    operator.remove();
    await bed.down();
  }
};

export default scenario;
