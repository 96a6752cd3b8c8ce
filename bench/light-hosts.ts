import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, freemem, tmpdir } from "node:os";
import { join } from "node:path";
import type { BedHost } from "../test/bed/types.js";
import { TestBed } from "../test/bed/bed.js";
import { run } from "../test/bed/proc.js";
import { WorkRepo } from "../test/bed/work-repo.js";
import { kib, median, ms, ratio } from "../test/helpers/report.js";
import { assertBuilt, BIN, cliEnv, commitRoot, writeSshConfig, machineCpuSeconds, spread, timedRun, type ChildRun } from "./cli.js";
import type { Bench } from "./section.js";

/**
 * A one-file change of a 50-file app to 1,000 light hosts (plain sshd on
 * loopback, no systemd), 100 at a time, side by side in one run: `tidemark
 * deploy` (the built CLI, a child process, `maxParallel: 100`) vs `rsync`
 * over ssh run by `xargs -P 100`. Wall time, and the CPU seconds of each
 * tool's processes (the CLI; xargs with every rsync and ssh it ran), per host.
 * `npm run bench -- light-hosts`; TIDEMARK_BENCH_ROUNDS sets the rounds,
 * TIDEMARK_BENCH_LIGHT_HOSTS the hosts.
 */
const WANTED = Number(process.env.TIDEMARK_BENCH_LIGHT_HOSTS ?? 1000);
const PARALLEL = 100;
const STATIC_FILES = 49; // + run.sh: 50 files
const ROUNDS = Number(process.env.TIDEMARK_BENCH_ROUNDS ?? 3);
const TOOLS = ["tidemark", "rsync"] as const;
type Tool = (typeof TOOLS)[number];
/** Room per light host: its sshd (~1.3 MB), and a connection's sshd processes and shell while it is deployed to. */
const BYTES_PER_HOST = 8 * 1024 * 1024;
const SPARE_BYTES = 2 * 1024 * 1024 * 1024;

interface Sample {
  ms: number;
  cpuSeconds: number;
  /** CPU seconds the hosts' sshd (and what they ran) used during the run, all hosts together. */
  hostsCpu?: number;
  /** Busy CPU seconds of the whole machine during the run: the tool, the hosts, and whatever else ran. */
  machineCpu?: number;
  /** Tidemark: process start to the rollout's start, and the hosts' median apply. */
  before?: number;
  hostMs?: number;
}

const bench: Bench = async (log) => {
  assertBuilt();
  // The largest count this machine holds, if it does not hold the one asked for.
  const fits = Math.floor((freemem() - SPARE_BYTES) / BYTES_PER_HOST);
  const HOSTS = Math.min(WANTED, fits);
  if (HOSTS < WANTED) log(`${WANTED} light hosts do not fit in ${Math.round(freemem() / 2 ** 20)} MiB free: measuring ${HOSTS}`);
  const bringUp = performance.now();
  const bed = await TestBed.up({ lightHosts: HOSTS, forge: true });
  log(`${HOSTS} light hosts up in ${ms(performance.now() - bringUp)}`);
  const dir = mkdtempSync(join(tmpdir(), "tidemark-bench-light-"));
  const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
  try {
    // The same app for both tools, in its own place on the hosts: Tidemark's release dirs, /srv/rsync (each light host has its own /srv).
    const local = join(dir, "app");
    mkdirSync(join(local, "static"), { recursive: true });
    const staticFile = (i: number, version: number) => `${i === 0 ? version : 0}\n${"x".repeat(4000)}\n`;
    const writeLocal = (version: number, all = false) => {
      for (let i = 0; i < (all ? STATIC_FILES : 1); i++) writeFileSync(join(local, `static/file${i}.txt`), staticFile(i, version));
      if (all) writeFileSync(join(local, "run.sh"), "exec sleep infinity\n");
    };
    const inventory = bed.hosts
      .map((host) => `  ${host.name}: { address: ${host.address}, port: ${host.port}, hostKey: "${host.hostKey}" }`)
      .join("\n");
    const config = `environments:\n  production: { track: { branch: main }, tree: fleet }\nhosts:\n${inventory}\nrollout: { maxParallel: ${PARALLEL}, canary: 0, maxFailures: ${HOSTS} }\n`;
    // Every host runs the same app: the commit is built with git's plumbing from the local app dir (writing 1,000 copies of it would take minutes).
    const git = async (args: string[], input?: string) => (await run("git", args, { cwd: work.dir, input })).stdout.trim();
    const commit = async (version: number) => {
      const names = [...Array.from({ length: STATIC_FILES }, (_, i) => `static/file${i}.txt`), "run.sh"];
      const blobs = (await git(["hash-object", "-w", "--", ...names.map((name) => join(local, name))])).split("\n");
      const tree = (lines: string[]) => git(["mktree"], `${lines.join("\n")}\n`);
      const staticTree = await tree(
        names.slice(0, STATIC_FILES).map((name, i) => `100644 blob ${blobs[i]!}\t${name.slice("static/".length)}`),
      );
      const app = await tree([`040000 tree ${staticTree}\tstatic`, `100644 blob ${blobs[STATIC_FILES]!}\trun.sh`]);
      const host = await tree([`040000 tree ${app}\tbench`]);
      const fleet = await tree(bed.hosts.map((each) => `040000 tree ${host}\t${each.name}`));
      const yaml = await git(["hash-object", "-w", "--stdin"], config);
      return commitRoot(work, await tree([`100644 blob ${yaml}\ttidemark.yaml`, `040000 tree ${fleet}\tfleet`]), `v${version}`);
    };
    const env = cliEnv(bed, dir);

    const tidemark = async (sha: string): Promise<Sample> => {
      const result: ChildRun = await timedRun(process.execPath, [BIN, "deploy", "production", "--yes", "--json", "--settle", "0.3"], {
        env,
        cpu: true,
      });
      if (!result.stdout.startsWith("{"))
        throw new Error(`tidemark deploy failed (exit ${String(result.code)}): ${result.stderr.slice(-2000)}`);
      const deployment = JSON.parse(result.stdout) as {
        sourceCommit: string;
        hosts: Array<{ host: string; outcome: string; detail?: string; durationMs?: number }>;
      };
      const bad = deployment.hosts.filter((host) => host.outcome !== "deployed");
      if (result.code !== 0 || bad.length > 0 || deployment.sourceCommit !== sha)
        throw new Error(
          `tidemark deploy did not deploy ${sha.slice(0, 7)} everywhere (exit ${String(result.code)}): ${bad.length} hosts, e.g. ${bad
            .slice(0, 5)
            .map((host) => `${host.host} ${host.outcome} ${host.detail ?? ""}`)
            .join("; ")}`,
        );
      // The rollout's start, from the store's record of it.
      const history = await timedRun(process.execPath, [BIN, "history", "production", "--json", "--limit", "1"], { env });
      const startedAt = Date.parse((JSON.parse(history.stdout) as Array<{ startedAt: string }>)[0]!.startedAt);
      return {
        ms: result.ms,
        cpuSeconds: result.cpuSeconds!,
        before: startedAt - result.startedAt,
        hostMs: median(deployment.hosts.map((host) => host.durationMs ?? Number.NaN)),
      };
    };

    // rsync as a person would run it on many hosts: xargs, 100 at a time, a fresh ssh connection each.
    writeSshConfig(join(dir, "ssh_config"), bed.clientKeyPath, bed.describe().knownHosts);
    writeFileSync(join(dir, "ports"), bed.hosts.map((host) => `${host.port}\n`).join(""));
    const rsyncScript = `xargs -P ${PARALLEL} -I{} rsync -a --delete -e 'ssh -F ${join(dir, "ssh_config")} -p {}' ${local}/ root@127.0.0.1:/srv/rsync/ < ${join(dir, "ports")}`;
    const rsync = async (): Promise<Sample> => {
      const result = await timedRun("sh", ["-c", rsyncScript], { cpu: true });
      if (result.code !== 0) throw new Error(`rsync through xargs exited ${String(result.code)}: ${result.stderr.slice(-2000)}`);
      return { ms: result.ms, cpuSeconds: result.cpuSeconds! };
    };
    const hostsCpu = () => bed.hosts.reduce((sum, host) => sum + bed.cpuSeconds(host.name), 0);
    const sshTo = async (host: BedHost, line: string) =>
      (await run("ssh", ["-F", join(dir, "ssh_config"), "-p", String(host.port), `root@${host.address}`, line])).stdout;

    log(`round 0: first deployment to ${HOSTS} light hosts with each tool (not measured)`);
    writeLocal(0, true);
    const first = await commit(0);
    await tidemark(first);
    await rsync();
    const samples: Record<Tool, Sample[]> = { tidemark: [], rsync: [] };
    for (let round = 1; round <= ROUNDS; round++) {
      writeLocal(round);
      const sha = await commit(round);
      const order = round % 2 === 1 ? TOOLS : [...TOOLS].reverse();
      for (const tool of order) {
        const [hostsBefore, machineBefore] = [hostsCpu(), machineCpuSeconds()];
        const sample = tool === "tidemark" ? await tidemark(sha) : await rsync();
        samples[tool].push({ ...sample, hostsCpu: hostsCpu() - hostsBefore, machineCpu: machineCpuSeconds() - machineBefore });
      }
      // Both tools really changed the file, on the first, a middle and the last host.
      for (const host of [bed.hosts[0]!, bed.hosts[Math.floor(HOSTS / 2)]!, bed.hosts[HOSTS - 1]!]) {
        const seen = await sshTo(
          host,
          "head -qn1 /var/lib/tidemark/apps/bench/current/static/file0.txt /srv/rsync/static/file0.txt | tr '\\n' ' '",
        );
        if (seen.trim() !== `${round} ${round}`) throw new Error(`${host.name} has ${JSON.stringify(seen)} after round ${round}`);
      }
      log(
        `round ${round}/${ROUNDS}: ${TOOLS.map((tool) => `${tool} ${ms(samples[tool].at(-1)!.ms)}, ${samples[tool].at(-1)!.cpuSeconds.toFixed(1)} CPU s`).join("; ")}`,
      );
    }

    const wall = (tool: Tool) => median(samples[tool].map((sample) => sample.ms));
    const cpu = (tool: Tool) => median(samples[tool].map((sample) => sample.cpuSeconds));
    const [t, r] = [wall("tidemark"), wall("rsync")];
    const met = t / r <= 0.6;
    const perHostCpu = (tool: Tool) => `${((cpu(tool) / HOSTS) * 1000).toFixed(1)} ms`;
    const hostsCpuOf = (tool: Tool) => median(samples[tool].map((sample) => sample.hostsCpu!));
    const machineOf = (tool: Tool) => median(samples[tool].map((sample) => sample.machineCpu!));
    /** Cores busy on average over the run, of the machine's. */
    const busy = (tool: Tool) => `${(machineOf(tool) / (wall(tool) / 1000)).toFixed(2)} of ${cpus().length}`;
    const others = (tool: Tool) => machineOf(tool) - cpu(tool) - hostsCpuOf(tool);
    return [
      {
        title: `One-file change to ${HOSTS} light hosts, ${PARALLEL} at a time: Tidemark and rsync`,
        setup: `A one-file change to an app of ${STATIC_FILES + 1} files (${kib(STATIC_FILES * staticFile(1, 0).length + "exec sleep infinity\n".length)}, no units) on ${HOSTS} light hosts of the test bed (plain sshd on loopback ports, each with its own /root, /srv and /var/lib/tidemark; no systemd, no added latency)${HOSTS < WANTED ? `, the most this machine's free memory held (${WANTED} asked for)` : ""}, ${PARALLEL} hosts at a time. Each tool is timed as users run it, spawn to exit; The tool's CPU is user + system time of its processes (getrusage of the waited-for children, through \`sh\`'s \`times\`): the CLI's one process; xargs and every rsync and ssh it ran. The hosts' CPU is their cgroups' (\`cpu.stat\`: sshd and what it ran for the tool); cores busy is the whole machine's busy time (\`/proc/stat\`) over the run's wall time, other work on the machine included. Median (min–max) of ${ROUNDS} round(s) after an unmeasured first one; the order alternates.`,
        header: [
          "tool",
          "wall time",
          "per host",
          "tool's CPU",
          "tool's CPU per host",
          "hosts' CPU per host",
          "machine: cores busy",
          "vs rsync",
        ],
        rows: TOOLS.map((tool) => [
          tool === "tidemark"
            ? `\`tidemark deploy\` (built CLI, a child process; \`maxParallel: ${PARALLEL}\`, canary 0; no units, so no settle)`
            : `\`rsync -a --delete\` over ssh, \`xargs -P ${PARALLEL}\`, fresh connections`,
          spread(
            samples[tool].map((sample) => sample.ms),
            ms,
          ),
          ms(wall(tool) / HOSTS),
          `${cpu(tool).toFixed(1)} s`,
          perHostCpu(tool),
          `${((hostsCpuOf(tool) / HOSTS) * 1000).toFixed(1)} ms`,
          busy(tool),
          tool === "rsync" ? "1" : ratio(t, r),
        ]),
        notes: [
          `Tidemark takes ${ratio(t, r)} rsync's time on ${HOSTS} hosts; goal: at most 0.6× (${met ? "met" : "missed"}).${met ? "" : ` Where the time went: ${ms(median(samples.tidemark.map((sample) => sample.before!)))} from the process's start to the rollout's start (Node's start, fetch, plan of ${HOSTS} hosts, store import), a median of ${ms(median(samples.tidemark.map((sample) => sample.hostMs!)))} per host (${PARALLEL} at a time), and ${cpu("tidemark").toFixed(1)} CPU s in the CLI's one process (${ratio(cpu("tidemark"), t / 1000)} of one core over its wall time) against ${cpu("rsync").toFixed(1)} CPU s spread over rsync's and ssh's processes. The machine: ${busy("tidemark")} cores busy during Tidemark's run (the CLI ${cpu("tidemark").toFixed(1)} s, the hosts' sshd ${hostsCpuOf("tidemark").toFixed(1)} s, everything else ${others("tidemark").toFixed(1)} s), ${busy("rsync")} during rsync's (rsync and ssh ${cpu("rsync").toFixed(1)} s, the hosts ${hostsCpuOf("rsync").toFixed(1)} s, everything else ${others("rsync").toFixed(1)} s).`}`,
          `CPU per host: Tidemark's process ${perHostCpu("tidemark")}, rsync with ssh ${perHostCpu("rsync")} (${ratio(cpu("tidemark"), cpu("rsync"))}).`,
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
