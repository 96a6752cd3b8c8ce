import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../src/cli/main.js";
import type { TimelineStep } from "../src/core/outcome.js";
import { TestBed } from "../test/bed/bed.js";
import { run } from "../test/bed/proc.js";
import { WorkRepo } from "../test/bed/work-repo.js";
import { kib, median, ms, ratio } from "../test/helpers/report.js";
import type { Bench } from "./section.js";

/**
 * The ways back, timed on systemd hosts:
 * (a) automatic rollback: a release whose unit fails on every host; per host,
 *     from the failure seen to the previous release active again, from the
 *     deployment's own timeline;
 * (b) `tidemark rollback` of an environment that tracks a pinned tag, to a
 *     tag whose release dirs are still on the hosts, next to the forward
 *     deployment of a one-file change just before it, in the same round.
 * `npm run bench -- rollback`; TIDEMARK_BENCH_ROUNDS sets the rounds.
 */
const HOSTS = 3;
const FILES = 20;
const ROUNDS = Number(process.env.TIDEMARK_BENCH_ROUNDS ?? 5);
/** Settle before the unit check: a unit that exits at once must have had the time to. */
const FAILING_SETTLE = 0.3;
const UNIT = "bench.service";

interface HostJson {
  host: string;
  outcome: string;
  detail?: string;
  timeline?: TimelineStep[];
  uploadedBytes?: number;
}
interface DeploymentJson {
  id: string;
  hosts: HostJson[];
  returnTo?: { id: string; sourceCommit: string };
}

const bench: Bench = async (log) => {
  const bed = await TestBed.up({ systemdHosts: HOSTS, forge: true });
  const dir = mkdtempSync(join(tmpdir(), "tidemark-bench-rollback-"));
  const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
  const info = bed.describe();
  const uplink = `tmk${bed.id}`;
  const wireBytes = () =>
    ["tx_bytes", "rx_bytes"].reduce(
      (sum, counter) => sum + Number(readFileSync(`/sys/class/net/${uplink}/statistics/${counter}`, "utf8")),
      0,
    );
  const sshOptions = [
    "-i",
    bed.clientKeyPath,
    "-o",
    `UserKnownHostsFile=${info.knownHosts}`,
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "BatchMode=yes",
  ];
  // OpenSSH's client for the bench's own looks at the hosts, apart from what is measured.
  const onHosts = (line: string) =>
    Promise.all(bed.hosts.map(async (host) => (await run("ssh", [...sshOptions, `root@${host.address}`, line])).stdout.trim()));
  // The CLI pushes the moved tag: its repo URL carries the forge's credentials.
  const env = {
    TIDEMARK_REPO: bed.forge!.pushUrl(bed.forgeRepo),
    TIDEMARK_STORE: join(dir, "store.git"),
    TIDEMARK_MIRRORS: join(dir, "mirrors"),
    TIDEMARK_SSH_KEY: bed.clientKeyPath,
  };
  const tidemark = async (args: string[]) => {
    let out = "";
    let err = "";
    const started = performance.now();
    const code = await main(["node", "tidemark", ...args, "--json"], { env, out: (text) => (out += text), err: (text) => (err += text) });
    const took = performance.now() - started;
    if (!out.startsWith("{")) throw new Error(`tidemark ${args.join(" ")} failed (exit ${code}): ${err.slice(-2000)}`);
    return { code, took, json: JSON.parse(out) as Record<string, unknown> };
  };
  const deploy = async (settle: number, expected: "deployed" | "rolled-back") => {
    const bytes = wireBytes();
    const { took, json } = await tidemark(["deploy", "production", "--yes", "--settle", String(settle)]);
    const deployment = json as unknown as DeploymentJson;
    const wrong = deployment.hosts.filter((host) => host.outcome !== expected);
    if (wrong.length > 0)
      throw new Error(
        `expected every host ${expected}: ${wrong.map((host) => `${host.host} ${host.outcome} ${host.detail ?? ""}`).join("; ")}`,
      );
    return { took, deployment, wirePerHost: (wireBytes() - bytes) / HOSTS };
  };
  /** What each host runs: the first line of the app's file0 under `current`, and whether the unit is active. */
  const live = () =>
    onHosts(`printf '%s %s' "$(head -n1 /var/lib/tidemark/apps/bench/current/static/file0.txt)" "$(systemctl is-active ${UNIT})"`);
  const expectLive = async (version: string, when: string) => {
    const seen = await live();
    if (seen.some((line) => line !== `${version} active`))
      throw new Error(`after ${when}, the hosts run ${JSON.stringify(seen)}, not ${version} with ${UNIT} active`);
  };

  try {
    const app = (version: string, run = "exec sleep infinity") => ({
      ...Object.fromEntries(
        Array.from({ length: FILES }, (_, i) => [`static/file${i}.txt`, `${i === 0 ? version : 0}\n${"x".repeat(4000)}\n`]),
      ),
      "run.sh": `${run}\n`,
      [`systemd/${UNIT}`]: `[Unit]\nDescription=bench\n\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/bench/current/run.sh\n`,
      "manifest.json": JSON.stringify({ systemd: { units_enabled: [UNIT] } }),
    });
    const tree = (files: Record<string, string>) =>
      Object.fromEntries(
        bed.hosts.flatMap((host) => Object.entries(files).map(([path, content]) => [`fleet/${host.name}/bench/${path}`, content])),
      );
    /** A release as people make one: a commit, its own tag, and the pin `production` moved to it. */
    const release = async (name: string, files: Record<string, string>) => {
      const sha = await work.commit(tree(files), name);
      await work.tag(name);
      await work.tag("production", { force: true });
      await work.git("push", "--quiet", "--force", "origin", "main", `refs/tags/${name}`, "refs/tags/production");
      return sha;
    };

    const inventory = bed.hosts.map((host) => `  ${host.name}: { address: ${host.address}, hostKey: "${host.hostKey}" }`).join("\n");
    await work.commit(
      {
        "tidemark.yaml": `environments:\n  production: { track: { tag: production }, tree: fleet }\nhosts:\n${inventory}\nrollout: { maxParallel: ${HOSTS}, canary: 0, maxFailures: ${HOSTS} }\n`,
      },
      "config",
    );
    const base = await release("v0", app("v0"));
    await deploy(0, "deployed");
    await expectLive("v0", "the first deployment");
    log("v0 is live on every host (not measured)");

    const forward: Array<{ took: number; uploaded: number; wire: number }> = [];
    const back: Array<{ move: number; took: number; uploaded: number[]; wire: number; returnTo: boolean }> = [];
    const auto: Array<{ detect: number; back: number; switch: number; restart: number; check: number }> = [];
    const failingDeploys: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      // (b) a one-file change forward, then `tidemark rollback` back to the tag before it, whose release dirs are on the hosts.
      await release(`f${round}`, app(`f${round}`));
      const ahead = await deploy(0, "deployed");
      await expectLive(`f${round}`, `the forward deployment of round ${round}`);
      forward.push({
        took: ahead.took,
        uploaded: median(ahead.deployment.hosts.map((host) => host.uploadedBytes ?? Number.NaN)),
        wire: ahead.wirePerHost,
      });

      const moved = await tidemark(["rollback", "production", "--yes"]);
      if (moved.code !== 0 || moved.json.action !== "moved-tag" || moved.json.commit !== base)
        throw new Error(`tidemark rollback did not move the pin back to v0: ${JSON.stringify(moved.json)}`);
      const behind = await deploy(0, "deployed");
      await expectLive("v0", `the rollback of round ${round}`);
      back.push({
        move: moved.took,
        took: behind.took,
        uploaded: behind.deployment.hosts.map((host) => host.uploadedBytes ?? Number.NaN),
        wire: behind.wirePerHost,
        returnTo: behind.deployment.returnTo?.sourceCommit === base,
      });

      // (a) a release whose unit exits at once on every host: each host sees it fail and goes back to v0 by itself.
      await release(`b${round}`, app(`b${round}`, "exit 3"));
      const broken = await deploy(FAILING_SETTLE, "rolled-back");
      await expectLive("v0", `the automatic rollback of round ${round}`);
      failingDeploys.push(broken.took);
      for (const host of broken.deployment.hosts) {
        const steps = host.timeline ?? [];
        const at = (phase: string, from = 0) => steps.slice(from).find((step) => step.phase === phase)?.at ?? Number.NaN;
        const turn = steps.findIndex((step) => step.phase === "rollback");
        if (turn < 0) throw new Error(`${host.host} rolled back without a rollback step in its timeline: ${JSON.stringify(steps)}`);
        const rolledBack = at("rollback", turn);
        const done = at("done", turn);
        auto.push({
          detect: rolledBack - at("check"),
          back: done - rolledBack,
          switch: at("restart", turn) - at("switch", turn),
          restart: at("check", turn) - at("restart", turn),
          check: done - at("check", turn),
        });
      }
      log(
        `round ${round}/${ROUNDS}: forward ${ms(ahead.took)}, tag moved back ${ms(moved.took)}, rollback deployment ${ms(behind.took)} (${behind.deployment.hosts.map((host) => host.uploadedBytes).join("/")} bytes uploaded), automatic rollback ${auto
          .slice(-HOSTS)
          .map((sample) => ms(sample.back))
          .join("/")}`,
      );
    }

    const stat = (values: number[]) => [ms(median(values)), ms(Math.min(...values)), ms(Math.max(...values))];
    const backMs = median(auto.map((sample) => sample.back));
    const forwardMs = median(forward.map((sample) => sample.took));
    const backDeployMs = median(back.map((sample) => sample.took));
    const totals = back.map((sample) => sample.move + sample.took);
    const uploads = back.flatMap((sample) => sample.uploaded);
    const nothingUploaded = uploads.every((bytes) => bytes === 0);
    return [
      {
        title: "Automatic rollback: failure seen → previous release active",
        setup: `A release whose unit exits at once (\`exit 3\`) on all ${HOSTS} systemd hosts, deployed with \`tidemark deploy\` (settle ${FAILING_SETTLE} s); each host sees its unit fail and goes back to the release before by itself. Times are from the deployment's own per-host timeline (\`timeline\` in the deployment JSON, \`Tidemark-Timeline\` in the store); after each run every host is checked over ssh: \`current\` holds the previous release and the unit is active. ${auto.length} samples (${HOSTS} hosts × ${ROUNDS} rounds).`,
        header: ["step", "median", "min", "max"],
        rows: [
          [
            "failure seen → previous release active (`rollback` → `done`: switch back, restart, unit checked active)",
            ...stat(auto.map((sample) => sample.back)),
          ],
          ["↳ switch `current` back", ...stat(auto.map((sample) => sample.switch))],
          ["↳ daemon-reload, restart the unit", ...stat(auto.map((sample) => sample.restart))],
          [`↳ unit check (settle ${FAILING_SETTLE} s, then its state)`, ...stat(auto.map((sample) => sample.check))],
          [
            `unit check of the new release → failure seen (settle ${FAILING_SETTLE} s, unit state, the unit's journal)`,
            ...stat(auto.map((sample) => sample.detect)),
          ],
          ["the whole failing deployment (fetch, plan, upload, switch, restart, check, rollback, record)", ...stat(failingDeploys)],
        ],
        notes: [
          `From the failure seen to the previous release running again and checked: median ${ms(backMs)}, of which ${ms(FAILING_SETTLE * 1000)} is the settle wait before the unit check (\`--settle\`); without it, ${ms(backMs - FAILING_SETTLE * 1000)}. No upload: the previous release dir is still on the host.`,
          `"Failure seen" is the \`rollback\` step of the timeline: it begins once the unit's state said failed and its journal was read for the report.`,
        ],
      },
      {
        title: "Rollback to a tag whose releases remain, next to a forward deployment",
        setup: `An environment tracking the pin tag \`production\` on ${HOSTS} systemd hosts. Each round, side by side: the tag moves forward to a one-file change (a 4 KiB file of ${FILES}) and \`tidemark deploy\` deploys it; then \`tidemark rollback production --yes\` moves the tag back to the release before (whose release dirs are still on the hosts) and \`tidemark deploy\` deploys that. Settle 0 s; bytes uploaded from the deployment JSON (\`uploadedBytes\`), bytes on the wire both directions on the bed's one uplink. Median of ${ROUNDS} rounds.`,
        header: ["step", "median", "min", "max", "uploaded per host", "on the wire per host", "vs forward"],
        rows: [
          [
            "forward: `tidemark deploy` of a one-file change",
            ...stat(forward.map((sample) => sample.took)),
            kib(median(forward.map((sample) => sample.uploaded))),
            kib(median(forward.map((sample) => sample.wire))),
            "1",
          ],
          [
            "back: `tidemark deploy` of the tag moved back",
            ...stat(back.map((sample) => sample.took)),
            bytes(median(uploads)),
            kib(median(back.map((sample) => sample.wire))),
            ratio(backDeployMs, forwardMs),
          ],
          [
            "`tidemark rollback production --yes` (find the release before, move and push the tag)",
            ...stat(back.map((sample) => sample.move)),
            "",
            "",
            ratio(median(back.map((sample) => sample.move)), forwardMs),
          ],
          ["back in all: `tidemark rollback` + `tidemark deploy`", ...stat(totals), "", "", ratio(median(totals), forwardMs)],
        ],
        notes: [
          `Uploaded by the rollback: ${nothingUploaded ? `0 bytes on every host in every round (${uploads.length} host deployments)` : `NOT 0: ${uploads.join(", ")} bytes`}; goal: nothing uploaded (${nothingUploaded ? "met" : "missed"}). ${back.every((sample) => sample.returnTo) ? "Every rollback deployment was recorded as a return to v0's deployment (`returnTo`)." : "Some rollback deployments were NOT recorded as a return (`returnTo` missing)."}`,
          `The rollback's deployment takes ${ratio(backDeployMs, forwardMs)} the forward one's time; with the tag move, ${ratio(median(totals), forwardMs)}. Both contact every host, take its lock, inspect it, switch, restart and check the unit; the forward one also uploads and hash-checks the changed file.`,
        ],
      },
    ];
  } finally {
    work.remove();
    rmSync(dir, { recursive: true, force: true });
    await bed.down();
  }
};
export default bench;

const bytes = (value: number) => (value === 0 ? "0 bytes" : kib(value));
