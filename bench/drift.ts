import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import type { BedHost } from "../test/bed/types.js";
import { TestBed } from "../test/bed/bed.js";
import { run } from "../test/bed/proc.js";
import { TcpProxy } from "../test/bed/tcp-proxy.js";
import { WorkRepo } from "../test/bed/work-repo.js";
import { kib, median, ms, ratio } from "../test/helpers/report.js";
import { appDir, script } from "../src/remote/commands.js";
import { driftLines } from "../src/remote/drift-host.js";
import { assertBuilt, BIN, cliEnv, commitRoot, writeSshConfig, spread, timedRun, type ChildRun } from "./cli.js";
import type { Bench, BenchSection } from "./section.js";

/**
 * `tidemark drift` of 10 light hosts (plain sshd on loopback, no systemd)
 * running an app of 5,000 small files, one of which was changed by hand on
 * every host, and the same check as the operator runs it on its schedule
 * (`tidemark serve`, connections kept between checks), next to one bare
 * `ssh host true` per host over fresh connections, every host in parallel,
 * side by side in one run. Both reach
 * every host through the bed's TCP proxy (host keys pinned), at no added
 * latency and at 50 ms added round-trip time: wall time, and per host the
 * bytes, TCP connections and round trips the proxy counted, the CPU of the
 * tool and of the hosts. Then, apart, the check's script alone on the hosts
 * (direct to sshd, no proxy), timed there. `npm run bench -- drift`;
 * TIDEMARK_BENCH_ROUNDS sets the rounds.
 */
const HOSTS = 10;
const DIRS = 50;
const FILES_PER_DIR = 100; // 5,000 files
/** Dirs added by each deployment of the app (1,000 files). */
const DIRS_PER_STEP = 10;
const ROUNDS = Number(process.env.TIDEMARK_BENCH_ROUNDS ?? 5);
const RTTS = [0, 50] as const;
/** What runs in turn: the CLI, ssh, the operator (started, CHECKS scheduled checks, stopped). */
const TOOLS = ["drift", "ssh", "serve"] as const;
/** The table's rows: the operator's first check after its start (cold: it connects) apart from the following ones (warm). */
const ROWS = ["drift", "cold", "warm", "ssh"] as const;
type Tool = (typeof ROWS)[number];
const CHECKS = 4;
const INTERVAL = "2s";
type Rtt = (typeof RTTS)[number];
const ENV = "production";
const APP = "bench";
const GOAL = 1.5;

/** The file changed by hand on every host, in the app. */
const CHANGED = "d24/f0050.txt";

/** What the proxies and the hosts' cgroups have counted so far. */
interface Snapshot {
  bytes: number[];
  connections: number[];
  turns: number[];
  hostsCpu: number;
}

/** A JSON log line of `tidemark serve` (pino: `time` in ms). */
interface LogLine {
  msg: string;
  time: number;
  host?: string;
  findings?: unknown;
}

interface Sample {
  tool: Tool;
  rtt: Rtt;
  /** Spawn to exit; the operator's check: its "drift check started" log line to its result's. */
  ms: number;
  /** User + system CPU seconds of the tool's processes (the CLI's one; sh and every ssh; the operator's during the check). */
  cpuSeconds: number;
  /** CPU seconds of the hosts' sshd and what it ran, all hosts together. */
  hostsCpu: number;
  /** Per host, from the proxy: both directions, connections accepted, turns. */
  bytes: number[];
  connections: number[];
  turns: number[];
  /** From the spawn to the first answer of any host (the proxy's clock: data from a host after the client spoke). */
  toFirst: number;
  /** Per host, its first answer to its last. */
  spans: number[];
  /** From the last answer of any host to the exit. */
  afterLast: number;
}

interface DriftJson {
  schema: string;
  hosts: Array<{ host: string; state: string; findings: Array<{ kind: string; path: string }>; detail?: string }>;
}

const bench: Bench = async (log) => {
  assertBuilt();
  const bed = await TestBed.up({ lightHosts: HOSTS, forge: true, redis: true });
  const dir = mkdtempSync(join(tmpdir(), "tidemark-bench-drift-"));
  const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
  const proxies: TcpProxy[] = [];
  try {
    // --- The hosts: a proxy in front of each, for both tools alike; each one's answers (turns), timed.
    for (const host of bed.hosts) proxies.push(await TcpProxy.start(host, { handshake: true }));
    const hosts = bed.hosts.map((host, i) => ({ ...host, proxy: proxies[i]! }));
    const turnLog = hosts.map((host) => {
      const at: number[] = [];
      host.proxy.onTurn = () => at.push(Date.now());
      return at;
    });

    // --- The app: 5,000 small files in 50 dirs, the same on every host; committed with git's plumbing (50,000 files in a work tree would take long).
    const content = (d: number, f: number, fill = "x") => `${d}/${f}\n${fill.repeat(100 + ((d * FILES_PER_DIR + f) % 100))}\n`;
    const dirName = (d: number) => `d${String(d).padStart(2, "0")}`;
    const name = (d: number, f: number) => `${dirName(d)}/f${String(f).padStart(4, "0")}.txt`;
    const local = join(dir, "app");
    const paths: string[] = [];
    let appBytes = 0;
    let changedContent = "";
    for (let d = 0; d < DIRS; d++) {
      mkdirSync(join(local, dirName(d)), { recursive: true });
      for (let f = 0; f < FILES_PER_DIR; f++) {
        const text = content(d, f);
        writeFileSync(join(local, name(d, f)), text);
        paths.push(name(d, f));
        appBytes += text.length;
        // The same size, other bytes: only a hash of the content tells it changed.
        if (name(d, f) === CHANGED) changedContent = content(d, f, "y");
      }
    }
    if (!changedContent) throw new Error(`${CHANGED} is not one of the app's files`);
    const inventory = hosts
      .map((host) => `  ${host.name}: { address: 127.0.0.1, port: ${host.proxy.port}, hostKey: "${host.hostKey}" }`)
      .join("\n");
    const config = `environments:\n  ${ENV}: { track: { branch: main }, tree: fleet, drift: { mode: warn, interval: ${INTERVAL} } }\nhosts:\n${inventory}\nrollout: { maxParallel: ${HOSTS}, canary: 0, maxFailures: ${HOSTS} }\n`;
    const git = async (args: string[], input?: string) => (await run("git", args, { cwd: work.dir, input })).stdout.trim();
    const blobs = (await git(["hash-object", "-w", "--stdin-paths"], `${paths.map((path) => join(local, path)).join("\n")}\n`)).split("\n");
    if (blobs.length !== paths.length) throw new Error(`git hash-object wrote ${blobs.length} blobs for ${paths.length} files`);
    const tree = (lines: string[]) => git(["mktree"], `${lines.join("\n")}\n`);
    const subtrees: string[] = [];
    for (let d = 0; d < DIRS; d++) {
      const entries = Array.from({ length: FILES_PER_DIR }, (_, f) => {
        const i = d * FILES_PER_DIR + f;
        return `100644 blob ${blobs[i]!}\t${paths[i]!.split("/")[1]!}`;
      });
      subtrees.push(`040000 tree ${await tree(entries)}\t${dirName(d)}`);
    }
    const yaml = await git(["hash-object", "-w", "--stdin"], config);
    /** A commit of the app's first `dirs` dirs on every host; pushed. */
    const commit = async (dirs: number) => {
      const app = await tree(subtrees.slice(0, dirs));
      const hostTree = await tree([`040000 tree ${app}\t${APP}`]);
      const fleet = await tree(hosts.map((host) => `040000 tree ${hostTree}\t${host.name}`));
      return commitRoot(
        work,
        await tree([`100644 blob ${yaml}\ttidemark.yaml`, `040000 tree ${fleet}\tfleet`]),
        `${dirs * FILES_PER_DIR} files`,
      );
    };

    const env = cliEnv(bed, dir);

    // --- ssh as a person runs it: the bed's client key, the hosts' keys pinned for the proxy ports, fresh connections.
    const knownHosts = join(dir, "known_hosts");
    writeFileSync(knownHosts, hosts.map((host) => `[127.0.0.1]:${host.proxy.port} ${host.hostKey}\n`).join(""));
    // The hosts themselves, direct (no proxy): for the edits by hand and the check's script timed on its own.
    writeFileSync(join(dir, "known_hosts_direct"), hosts.map((host) => `[127.0.0.1]:${host.port} ${host.hostKey}\n`).join(""));
    writeSshConfig(join(dir, "ssh_config"), bed.clientKeyPath, knownHosts);
    writeSshConfig(join(dir, "ssh_config_direct"), bed.clientKeyPath, join(dir, "known_hosts_direct"));
    const sshScript = join(dir, "ssh-true.sh");
    writeFileSync(
      sshScript,
      [
        "pids=",
        ...hosts.map((host) => `ssh -F ${join(dir, "ssh_config")} -p ${host.proxy.port} root@127.0.0.1 true & pids="$pids $!"`),
        "status=0",
        'for pid in $pids; do wait "$pid" || status=1; done',
        "exit $status",
        "",
      ].join("\n"),
    );
    const direct = async (host: BedHost, line: string, input?: string) =>
      (await run("ssh", ["-F", join(dir, "ssh_config_direct"), "-p", String(host.port), "root@127.0.0.1", line], { input })).stdout;

    // --- The app deployed (not measured), in steps of 1,000 files, each release built on the one before (hard links), as an app grows.
    // Not in one step: 5,000 new files at once make every host's upload slow enough that connections drop (see the notes).
    log(`deploying ${paths.length} files (${kib(appBytes)}) to ${HOSTS} light hosts, ${DIRS / DIRS_PER_STEP} steps (not measured)`);
    const deployLog: string[] = [];
    let sha = "";
    for (let dirs = DIRS_PER_STEP; dirs <= DIRS; dirs += DIRS_PER_STEP) {
      sha = await commit(dirs);
      // A host that lost its connection is deployed again, as the CLI's hint says (every step is idempotent).
      for (let attempt = 1; ; attempt++) {
        const deployed = await timedRun(process.execPath, [BIN, "deploy", ENV, "--yes", "--json"], { env });
        const outcomes = deployed.stdout.startsWith("{")
          ? (JSON.parse(deployed.stdout) as { sourceCommit: string; hosts: Array<{ host: string; outcome: string; detail?: string }> })
          : undefined;
        const bad = outcomes?.hosts.filter((host) => host.outcome !== "deployed" && host.outcome !== "unchanged") ?? [];
        const line = `${dirs * FILES_PER_DIR} files, run ${attempt}: ${ms(deployed.ms)}, ${outcomes ? `${outcomes.hosts.length - bad.length} of ${outcomes.hosts.length} hosts live` : `exit ${String(deployed.code)}, no JSON`}${bad.length > 0 ? ` (${bad.map((host) => `${host.host}: ${host.detail?.split("\n")[0] ?? host.outcome}`).join("; ")})` : ""}`;
        deployLog.push(line);
        log(`deployment of ${line}`);
        if (deployed.code === 0 && outcomes?.sourceCommit === sha && outcomes.hosts.length === HOSTS && bad.length === 0) break;
        if (attempt === 3)
          throw new Error(
            `tidemark deploy did not deploy ${sha.slice(0, 7)} everywhere in 3 runs (exit ${String(deployed.code)}): ${bad.map((host) => `${host.host} ${host.outcome} ${host.detail ?? ""}`).join("; ")}\n${deployed.stderr.slice(-3000)}`,
          );
      }
    }

    const driftRun = async (): Promise<{ result: ChildRun; json: DriftJson }> => {
      const result = await timedRun(process.execPath, [BIN, "drift", ENV, "--json"], { env, cpu: true });
      let json: DriftJson;
      try {
        json = JSON.parse(result.stdout) as DriftJson;
      } catch {
        throw new Error(`tidemark drift printed no JSON (exit ${String(result.code)}): ${result.stderr.slice(-3000)}`);
      }
      if (json.schema !== "tidemark.drift/v1") throw new Error(`tidemark drift printed schema ${json.schema}`);
      return { result, json };
    };
    const expectFindings = (json: DriftJson, code: number | null, want: number, findings: DriftJson["hosts"][number]["findings"]) => {
      const state = findings.length > 0 ? "drift" : "clean";
      const wrong = hosts.filter((host) => {
        const seen = json.hosts.find((each) => each.host === host.name);
        return seen?.state !== state || JSON.stringify(seen.findings) !== JSON.stringify(findings);
      });
      if (code !== want || wrong.length > 0 || json.hosts.length !== HOSTS)
        throw new Error(
          `tidemark drift exited ${String(code)} (not ${want}), and ${wrong.length} of ${HOSTS} hosts are not ${state} with ${JSON.stringify(findings)}: ${JSON.stringify(json.hosts.slice(0, 3))}`,
        );
    };

    // As deployed, every host is clean (exit 0): the check finds nothing that is not there.
    const clean = await driftRun();
    expectFindings(clean.json, clean.result.code, 0, []);
    log(`as deployed: clean on every host (${ms(clean.result.ms)})`);

    // --- The change by hand on every host, as root: write access first, then the mode back, so only the content differs.
    const release = (await direct(hosts[0]!, `readlink ${appDir(APP)}/current`)).trim();
    if (!/^[0-9a-f]{40}$/.test(release)) throw new Error(`${appDir(APP)}/current of ${hosts[0]!.name} is ${JSON.stringify(release)}`);
    const changedPath = `${appDir(APP)}/${release}/${CHANGED}`;
    await Promise.all(
      hosts.map(async (host) => {
        const seen = (await direct(host, `readlink ${appDir(APP)}/current`)).trim();
        if (seen !== release) throw new Error(`${host.name} runs ${seen}, ${hosts[0]!.name} ${release}: not the same release`);
        await direct(
          host,
          `m=$(stat -c %a ${changedPath}) && chmod u+w ${changedPath} && cat > ${changedPath} && chmod "$m" ${changedPath}`,
          changedContent,
        );
      }),
    );
    const finding = [{ kind: "modified", path: `${APP}/${CHANGED}` }];

    // --- One measured run of a tool: its wall time, and what the proxies and the hosts' cgroups counted.
    const snapshot = (): Snapshot => ({
      bytes: hosts.map((host) => host.proxy.bytes.up + host.proxy.bytes.down),
      connections: hosts.map((host) => host.proxy.counts.accepted),
      turns: turnLog.map((at) => at.length),
      hostsCpu: hosts.reduce((sum, host) => sum + bed.cpuSeconds(host.name), 0),
    });
    /** A sample of what ran from `startedAt` to `endedAt` (Date.now()'s clock), between two snapshots. */
    const measured = (
      tool: Tool,
      rtt: Rtt,
      before: Snapshot,
      after: Snapshot,
      ran: { ms: number; cpuSeconds: number; startedAt: number; endedAt: number },
    ): Sample => {
      const answers = turnLog.map((at, i) => at.slice(before.turns[i], after.turns[i]));
      if (answers.some((list) => list.length === 0)) throw new Error(`${tool}: some host never answered through its proxy`);
      const last = Math.max(...answers.map((list) => list.at(-1)!));
      return {
        tool,
        rtt,
        ms: ran.ms,
        cpuSeconds: ran.cpuSeconds,
        hostsCpu: after.hostsCpu - before.hostsCpu,
        bytes: after.bytes.map((count, i) => count - before.bytes[i]!),
        connections: after.connections.map((count, i) => count - before.connections[i]!),
        turns: answers.map((list) => list.length),
        toFirst: Math.min(...answers.map((list) => list[0]!)) - ran.startedAt,
        spans: answers.map((list) => list.at(-1)! - list[0]!),
        afterLast: ran.endedAt - last,
      };
    };
    const once = async (tool: "drift" | "ssh", rtt: Rtt): Promise<Sample> => {
      const before = snapshot();
      let result: ChildRun;
      if (tool === "drift") {
        const driven = await driftRun();
        expectFindings(driven.json, driven.result.code, 5, finding);
        result = driven.result;
      } else {
        result = await timedRun("sh", [sshScript], { cpu: true });
        if (result.code !== 0) throw new Error(`ssh true exited ${String(result.code)}: ${result.stderr.slice(-2000)}`);
      }
      return measured(tool, rtt, before, snapshot(), { ...result, cpuSeconds: result.cpuSeconds! });
    };

    // --- The operator as it runs: `tidemark serve` (the built CLI) on the CLI's store and mirrors, the same inventory (the proxies), Redis.
    // Started for each of its turns, it runs CHECKS scheduled checks (the first opens its connections, the others reuse them) and is stopped.
    const serveEnv = {
      ...env,
      TIDEMARK_REDIS_URL: bed.redis!.url,
      TIDEMARK_LISTEN: "127.0.0.1:0",
      // Not used (no webhook is sent), but serve wants a way to hear of pushes when it does not poll.
      TIDEMARK_WEBHOOK_SECRET: bed.webhookSecret,
      TIDEMARK_LOG_LEVEL: "debug",
    };
    /** User + system CPU seconds of a process so far (/proc/PID/stat: utime and stime, in ticks of 1/100 s). */
    const cpuOf = (pid: number) => {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      return (Number(fields[11]) + Number(fields[12])) / 100;
    };
    /** Each check checked (drift on every host, the one finding) and measured between its log lines, as they come. `poll`: TIDEMARK_POLL_INTERVAL. */
    const serveRun = async (rtt: Rtt, poll = "0"): Promise<Sample[]> => {
      const child = spawn(process.execPath, [BIN, "serve"], {
        env: { ...serveEnv, TIDEMARK_POLL_INTERVAL: poll },
        stdio: ["ignore", "pipe", "pipe"],
      });
      const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
      const lines: LogLine[] = [];
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const output = () =>
        `${lines
          .slice(-30)
          .map((line) => JSON.stringify(line))
          .join("\n")}\n${stderr.slice(-3000)}`;
      const samples: Sample[] = [];
      try {
        await new Promise<void>((resolve, reject) => {
          const end = (error?: Error) => {
            clearTimeout(timer);
            if (error) reject(error);
            else resolve();
          };
          const timer = setTimeout(
            () => end(new Error(`tidemark serve made ${samples.length} of ${CHECKS} drift checks in 120 s:\n${output()}`)),
            120_000,
          );
          void closed.then((code) => end(new Error(`tidemark serve exited ${String(code)}:\n${output()}`)));
          let buffered = "";
          let check: { time: number; before: Snapshot; cpu: number; from: number } | undefined;
          child.stdout.on("data", (chunk: Buffer) => {
            try {
              buffered += chunk.toString();
              const texts = buffered.split("\n");
              buffered = texts.pop()!;
              for (const text of texts.filter((each) => each.startsWith("{"))) {
                // Stopping: a check that ends meanwhile is not one of this turn's.
                if (samples.length === CHECKS) return;
                const line = JSON.parse(text) as LogLine;
                lines.push(line);
                if (line.msg === `${ENV}: drift check started`)
                  check = { time: line.time, before: snapshot(), cpu: cpuOf(child.pid!), from: lines.length };
                if (!check || !line.msg.startsWith(`${ENV}: drift check:`)) continue;
                const after = snapshot();
                const warned = lines.slice(check.from).filter((each) => each.msg === `${ENV}: ${each.host} drift`);
                const wrong = hosts.filter(
                  (host) => JSON.stringify(warned.find((each) => each.host === host.name)?.findings) !== JSON.stringify(finding),
                );
                if (line.msg !== `${ENV}: drift check: drift on ${HOSTS} of ${HOSTS} hosts` || warned.length !== HOSTS || wrong.length > 0)
                  throw new Error(
                    `tidemark serve's drift check: "${line.msg}"; ${wrong.length} of ${HOSTS} hosts not warned with ${JSON.stringify(finding)}:\n${output()}`,
                  );
                const ran = {
                  ms: line.time - check.time,
                  cpuSeconds: cpuOf(child.pid!) - check.cpu,
                  startedAt: check.time,
                  endedAt: line.time,
                };
                samples.push(measured(samples.length === 0 ? "cold" : "warm", rtt, check.before, after, ran));
                check = undefined;
                if (samples.length === CHECKS) end();
              }
            } catch (error) {
              end(error as Error);
            }
          });
        });
      } finally {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
        await closed;
        clearTimeout(timer);
      }
      return samples;
    };
    const turn = async (tool: (typeof TOOLS)[number], rtt: Rtt) => (tool === "serve" ? serveRun(rtt) : [await once(tool, rtt)]);

    // One unmeasured run of each: warm caches (the mirror's fetch, the hosts' inodes), and the change found before anything is timed.
    // The operator's first start polls the forge once a second: the poll asks for a deployment of main (already deployed: no change),
    // which puts the environment in Redis and sets its drift schedule; it starts with the operator from then on (no polling).
    log("round 0: one run of each, not measured");
    for (const tool of TOOLS) await (tool === "serve" ? serveRun(0, "1") : once(tool, 0));
    const samples: Sample[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      // Alternate the order per round (tools and latencies), so that neither always runs on a warmer machine.
      const rtts = round % 2 === 1 ? RTTS : [...RTTS].reverse();
      const order = round % 2 === 1 ? TOOLS : [...TOOLS].reverse();
      for (const rtt of rtts) {
        for (const proxy of proxies) proxy.throttle({ latencyMs: rtt / 2, handshake: true });
        const line: string[] = [];
        for (const tool of order) {
          const taken = await turn(tool, rtt);
          samples.push(...taken);
          line.push(`${tool} ${taken.map((sample) => ms(sample.ms)).join(", ")}`);
        }
        log(`round ${round}/${ROUNDS}, +${rtt} ms RTT: ${line.join(", ")}`);
      }
    }
    for (const proxy of proxies) proxy.throttle({});

    // --- Apart: the check's script alone, as the CLI sends it, timed on the host (direct to its sshd): one host alone, then all at once.
    const checkScript = script(
      "root",
      driftLines(
        "0123456789abcdef",
        { apps: [{ app: APP, release }], links: [{ path: `${appDir(APP)}/current`, target: release }], units: [] },
        false,
      ),
    );
    const timedCheck = async (host: BedHost) => {
      const out = await direct(
        host,
        `s=$(date +%s%N); ${checkScript.line} > /tmp/tm-bench-check.out; e=$(date +%s%N); grep -c '' /tmp/tm-bench-check.out; grep -F ' drift ' /tmp/tm-bench-check.out; echo $(( (e - s) / 1000000 ))`,
        checkScript.input,
      );
      const lines = out.trim().split("\n");
      if (lines[1] !== `0123456789abcdef drift modified ${APP}/${CHANGED}` || lines.length !== 3)
        throw new Error(`the check's script on ${host.name} printed ${JSON.stringify(out)}`);
      return Number(lines.at(-1));
    };
    const alone: number[] = [];
    const together: number[] = [];
    for (let i = 0; i < 3; i++) {
      alone.push(await timedCheck(hosts[i % HOSTS]!));
      together.push(...(await Promise.all(hosts.map(timedCheck))));
    }
    log(`the check's script on the host: alone ${ms(median(alone))}, ${HOSTS} hosts at once ${ms(median(together))}`);

    return report(samples, { files: paths.length, bytes: appBytes, alone, together, deployLog });
  } finally {
    for (const proxy of proxies) await proxy.close();
    work.remove();
    rmSync(dir, { recursive: true, force: true });
    await bed.down();
  }
};
export default bench;

function report(
  samples: Sample[],
  app: { files: number; bytes: number; alone: number[]; together: number[]; deployLog: string[] },
): BenchSection[] {
  const of = (tool: Tool, rtt: Rtt) => samples.filter((sample) => sample.tool === tool && sample.rtt === rtt);
  const wall = (tool: Tool, rtt: Rtt) => median(of(tool, rtt).map((sample) => sample.ms));
  const perHost = (tool: Tool, rtt: Rtt, pick: (sample: Sample) => number[]) => median(of(tool, rtt).flatMap(pick));
  const both = (format: (rtt: Rtt) => string) => RTTS.map(format).join(" / ");
  const cpu = (tool: Tool) => median(samples.filter((sample) => sample.tool === tool).map((sample) => sample.cpuSeconds));
  const hostsCpu = (tool: Tool) => median(samples.filter((sample) => sample.tool === tool).map((sample) => sample.hostsCpu)) / HOSTS;
  const rounds = of("drift", 0).length;
  const cores = cpus().length;
  const LABELS: Record<Tool, string> = {
    drift: "`tidemark drift production --json` (built CLI, a child process; `maxParallel: 10`)",
    cold: `\`tidemark serve\`'s scheduled check (\`interval: ${INTERVAL}\`): the first after its start, cold connections`,
    warm: `\`tidemark serve\`'s scheduled check: the next ${CHECKS - 1} after it, warm connections`,
    ssh: "`ssh host true`, every host in parallel (`sh` and `&`), fresh connections",
  };
  const rows = ROWS.map((tool) => [
    LABELS[tool],
    ...RTTS.flatMap((rtt) => [
      spread(
        of(tool, rtt).map((sample) => sample.ms),
        ms,
      ),
      tool === "ssh" ? "1" : ratio(wall(tool, rtt), wall("ssh", rtt)),
    ]),
    both((rtt) => kib(perHost(tool, rtt, (sample) => sample.bytes))),
    both((rtt) => String(perHost(tool, rtt, (sample) => sample.connections))),
    both((rtt) => String(perHost(tool, rtt, (sample) => sample.connections.map((count, i) => count + sample.turns[i]!)))),
    both((rtt) => ms(median(of(tool, rtt).map((sample) => sample.toFirst)))),
    both((rtt) => ms(perHost(tool, rtt, (sample) => sample.spans))),
    both((rtt) => ms(median(of(tool, rtt).map((sample) => sample.afterLast)))),
    `${(cpu(tool) * 1000).toFixed(0)} ms`,
    `${(hostsCpu(tool) * 1000).toFixed(1)} ms`,
  ]);
  const goal = (rtt: Rtt) => {
    const [t, s] = [wall("drift", rtt), wall("ssh", rtt)];
    return `at +${rtt} ms, \`tidemark drift\` takes ${ratio(t, s)} the time of one \`ssh host true\` per host (${ms(t)} vs ${ms(s)}); goal: at most ${GOAL}× (${t / s <= GOAL ? "met" : "missed"}).`;
  };
  const rttCost = (tool: Tool) => ((wall(tool, 50) - wall(tool, 0)) / 50).toFixed(1);
  const checks = (tool: Tool) => both((rtt) => `${ms(wall(tool, rtt))} (${ratio(wall(tool, rtt), wall("ssh", rtt))} ssh true)`);
  const parts = (tool: Tool) =>
    `${both((rtt) => ms(median(of(tool, rtt).map((sample) => sample.toFirst))))} from its start to the first host's answer, per host ${both((rtt) => ms(perHost(tool, rtt, (sample) => sample.spans)))} from its first answer to its last, ${both((rtt) => ms(median(of(tool, rtt).map((sample) => sample.afterLast))))} from the last answer to its result`;
  return [
    {
      title: `Drift check of ${HOSTS} hosts × ${app.files.toLocaleString("en-US")} files: \`tidemark drift\`, the operator's scheduled check and a bare \`ssh host true\``,
      setup: `An app of ${app.files.toLocaleString("en-US")} small files in ${DIRS} dirs (${kib(app.bytes)}, no units) deployed by \`tidemark deploy\` to ${HOSTS} light hosts of the test bed (plain sshd on loopback ports, no systemd) in ${DIRS / DIRS_PER_STEP} steps (see below); then on every host one file (\`${APP}/${CHANGED}\`) changed by hand as root, its size and mode kept, so that only a hash of its content tells. Each run of \`tidemark drift\` is checked: exit 5, and on every host exactly that one \`modified\` finding. The operator, \`tidemark serve\` (the built CLI, a child process, with the bed's Redis, on the store the CLI's deployments were recorded in and the same inventory), checks the environment on its schedule (\`drift: { mode: warn, interval: ${INTERVAL} }\`) over SSH connections it keeps between checks; in each of its turns it is started, makes ${CHECKS} checks and is stopped; a check is timed from its \`drift check started\` log line to its result's (\`drift on ${HOSTS} of ${HOSTS} hosts\`, each with a warning of that one finding, checked), on the operator's clock, and the proxies' counts are taken as those lines arrive. All tools reach every host through a TCP proxy of the bed's (host keys pinned: the inventory's \`hostKey\`, known_hosts lines for the proxy ports), at +0 ms and at +50 ms round-trip time (25 ms each way on every chunk, TCP's handshake charged to each new connection). The CLI and ssh are timed spawn to exit; all side by side; median (min–max) of ${rounds} round(s) after an unmeasured first one; tools and latencies alternate their order each round.`,
      header: [
        "tool",
        "+0 ms: median (min–max)",
        "× ssh true",
        "+50 ms RTT: median (min–max)",
        "× ssh true",
        "bytes / host (+0 / +50 ms)",
        "TCP connections / host",
        "round trips / host",
        "start → first host's answer",
        "per host: first answer → last",
        "last answer → end",
        "tool's CPU",
        "hosts' CPU / host",
      ],
      rows,
      notes: [
        `${goal(0)} ${goal(50)}`,
        `The operator's scheduled check, +0 / +50 ms: the first after its start (it opens its connections) ${checks("cold")}; the next ones, over the connections it kept, ${checks("warm")}. Where a warm check's time goes: ${parts("warm")}; a cold one: ${parts("cold")}. Its CPU in the operator per check: ${(cpu("cold") * 1000).toFixed(0)} ms cold, ${(cpu("warm") * 1000).toFixed(0)} ms warm (from /proc, in 10 ms ticks).`,
        `Where \`tidemark drift\`'s time goes (medians, +0 / +50 ms): ${both((rtt) => ms(median(of("drift", rtt).map((sample) => sample.toFirst))))} from the spawn to the first host's answer (Node's start, the fetch of the source repo, the store, each host's tree read from it, the TCP connect), against ${both((rtt) => ms(median(of("ssh", rtt).map((sample) => sample.toFirst))))} for ssh's processes to start and connect; then per host ${both((rtt) => ms(perHost("drift", rtt, (sample) => sample.spans)))} from its first answer to its last (the SSH handshake and the one exec of the check), against ${both((rtt) => ms(perHost("ssh", rtt, (sample) => sample.spans)))} for \`ssh true\`; then ${both((rtt) => ms(median(of("drift", rtt).map((sample) => sample.afterLast))))} from the last host's answer to the exit (${both((rtt) => ms(median(of("ssh", rtt).map((sample) => sample.afterLast))))} for ssh).`,
        `The check's script alone (as the CLI sends it, \`sh -s\` on stdin; measured apart, after the rounds, direct to the hosts' sshd, timed on the host from before \`sh -s\` to after): ${ms(median(app.alone))} on one host alone (${app.alone.map((value) => ms(value)).join(", ")}), ${ms(median(app.together))} per host with all ${HOSTS} at once (median of ${app.together.length}; the hosts share the machine's cores). Hosts' CPU per host per run: ${(hostsCpu("drift") * 1000).toFixed(1)} ms for \`tidemark drift\` (sshd, the check's find, awk and sha256sum), ${(hostsCpu("ssh") * 1000).toFixed(1)} ms for \`ssh true\`.`,
        `On the bed, the ${HOSTS} hosts and the tool share the machine's ${cores} cores: a run of \`tidemark drift\` needs ${cpu("drift").toFixed(2)} CPU s in the CLI and ${(hostsCpu("drift") * HOSTS).toFixed(2)} s on the hosts, at least ${ms(((cpu("drift") + hostsCpu("drift") * HOSTS) / cores) * 1000)} of wall time on ${cores} cores; \`ssh true\` needs ${cpu("ssh").toFixed(2)} s in ssh and ${(hostsCpu("ssh") * HOSTS).toFixed(2)} s on the hosts, at least ${ms(((cpu("ssh") + hostsCpu("ssh") * HOSTS) / cores) * 1000)}. On a real fleet each host's share runs on its own CPU.`,
        `RTT cost, (median at +50 ms − median at +0 ms) / 50 ms, the round trips waited for one after another: \`tidemark drift\` ${rttCost("drift")}, the operator's check ${rttCost("cold")} cold and ${rttCost("warm")} warm, \`ssh true\` ${rttCost("ssh")}.`,
        `The app was deployed before (not measured) in ${DIRS / DIRS_PER_STEP} steps of ${(DIRS_PER_STEP * FILES_PER_DIR).toLocaleString("en-US")} files, every host at once, each release built on the one before; a step's run that lost hosts was run again: ${app.deployLog.join("; ")}.`,
        "Counts per host, medians over hosts and runs, from the host's proxy: bytes both directions; TCP connections accepted; a round trip is a TCP handshake or a turn (data from the host after data from the client since the host last spoke). A host's answers are those turns, timed on the proxy's clock as the host's data reaches it. The tool's CPU: user + system time of its processes (the CLI's one; `sh` and every `ssh`), through `sh`'s `times`; the operator's during a check, from /proc; the hosts' CPU: their cgroups' `cpu.stat`.",
      ],
    },
  ];
}
