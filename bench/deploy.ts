import { openSync, closeSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import net, { type AddressInfo } from "node:net";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { TestBed } from "../test/bed/bed.js";
import { GiveUp, isAlive, run, sleep, waitFor } from "../test/bed/proc.js";
import { TcpProxy } from "../test/bed/tcp-proxy.js";
import { WorkRepo } from "../test/bed/work-repo.js";
import { kib, median, ms, ratio } from "../test/helpers/report.js";
import { SshSession } from "../src/remote/ssh-session.js";
import { assertBuilt, BIN, machineCpuSeconds, spread, timedRun, type ChildRun } from "./cli.js";
import type { BenchSection, Bench } from "./section.js";

/**
 * A one-file change of a 50-file app, restarted, settled 0.3 s and checked
 * on 10 systemd hosts, side by side in one run, each tool as users run it:
 *
 * - `cli`: `tidemark deploy` (the built CLI, a child process; canary 0, settle 0.3 s);
 * - `serve`: `tidemark serve` (the built CLI, a process), told by the forge's
 *   webhook: from the deployment's start to every host final, and apart,
 *   from the push;
 * - `rsync`: `rsync -a --delete` + `ssh` restart/settle/check, every host in
 *   parallel, over fresh connections;
 * - `floor`: the same over OpenSSH ControlMaster connections opened before
 *   (nothing left to connect: the floor for SSH);
 * - `ansible`: `ansible.posix.synchronize` + `systemd` restart + check task
 *   (forks 10, pipelining, Ansible's own ssh settings).
 *
 * Every tool reaches every host through the bed's TCP proxy, at no added
 * latency and at 50 ms added round-trip time (TCP's handshake included), with
 * host keys pinned. Per host and run, counted from the run: TCP connections
 * and round trips (by the proxy; serve's keepalives apart), exec and SFTP
 * channels and logins (sshd's own log on the host); and before each step, the
 * round trips of Tidemark's TCP and SSH handshakes alone, to tell them from
 * the rest. `npm run bench -- deploy`; TIDEMARK_BENCH_ROUNDS sets the rounds.
 */
const HOSTS = 10;
const STATIC_FILES = 49; // + run.sh: 50 files
const SETTLE = 0.3;
const ROUNDS = Number(process.env.TIDEMARK_BENCH_ROUNDS ?? 3);
const RTTS = [0, 50] as const;
const TOOLS = ["cli", "serve", "rsync", "floor", "ansible"] as const;
type Tool = (typeof TOOLS)[number];
type Rtt = (typeof RTTS)[number];
const ENV = "production";

/** A turn the proxy counted: on which of its connections (their accept order), when, and after how many bytes from the client. */
interface Turn {
  connection: number;
  at: number;
  asked: number;
}

/** What one host saw of one run. */
interface HostCount {
  connections: number;
  /** TCP handshakes, and the turns on the tool's own connections. */
  roundTrips: number;
  /** Turns on serve's kept connection that are no deployment's: its keepalives (see `once`). */
  keepalives: number;
  /** Of those, the ones within serve's deployment to the host. */
  keepalivesWithin: number;
  bytes: number;
  execs: number;
  sftp: number;
  logins: number;
}

/** Where a Tidemark run's time went, from its record (the rollout's start and each host's timeline). */
interface Phases {
  /** From the start (the CLI's spawn, serve's "deployment started") to the rollout's start: fetch, plan, store import. */
  before: number;
  /** From the rollout's start to the last host final. */
  rollout: number;
  /** From the last host final to the end (the CLI's exit, serve's "deployment succeeded" line): record, report. */
  after: number;
  /** Per host and phase, how long the phase lasted. */
  steps: Map<string, number[]>;
}

/** CPU seconds over one run: the tool's processes, the hosts (their containers), serve's process, the whole machine; and the run's wall time. */
interface Cpu {
  tool: number;
  hosts: number;
  serve: number;
  machine: number;
  ms: number;
}

interface Sample {
  tool: Tool;
  rtt: Rtt;
  /** The tool's figure: process spawn to exit; for serve, the deployment's start to every host final. */
  ms: number;
  /** serve: from the push to every host final. */
  fromPush?: number;
  hosts: HostCount[];
  phases?: Phases;
  cpu: Cpu;
  /** Time between one keepalive and the next on the same connection, in this run. */
  keepaliveGaps: number[];
}

interface HistoryEntry {
  sourceCommit: string;
  startedAt?: string;
  hosts: Array<{ host: string; outcome: string; timeline?: Array<{ phase: string; at: number }> }>;
}

const PHASES = ["connect", "lock", "inspect", "upload", "switch", "restart", "check", "commit"];
const q = (word: string) => `'${word.replaceAll("'", `'\\''`)}'`;

const bench: Bench = async (log) => {
  assertBuilt();
  const bed = await TestBed.up({ systemdHosts: HOSTS, redis: true, forge: true });
  const dir = mkdtempSync(join(tmpdir(), "tidemark-bench-deploy-"));
  // Unix socket paths are short (108 bytes): the control sockets live in a short dir.
  const sockets = mkdtempSync("/tmp/tmcm-");
  const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
  const proxies: TcpProxy[] = [];
  const masters: Array<{ host: string; pid: number | undefined; args: string[] }> = [];
  let serve: { pid: number; log: string } | undefined;
  let relay: ReturnType<typeof createServer> | undefined;
  let echo: net.Server | undefined;
  try {
    // --- The hosts: one proxy in front of each, for every tool alike; sshd logs each session it starts.
    for (const host of bed.hosts) proxies.push(await TcpProxy.start(host, { handshake: true }));
    const hosts = bed.hosts.map((host, i) => ({ ...host, proxy: proxies[i]! }));
    // Each host's turns, all along: serve's kept connection shares the proxy with the tool measured.
    const turnLog = hosts.map((host) => {
      const log: Turn[] = [];
      host.proxy.onTurn = (connection, asked) => log.push({ connection, at: Date.now(), asked });
      return log;
    });
    /** The connections serve deployed over, per host, and the bytes its keepalives send (see `once`). */
    const serveConnections = hosts.map(() => new Set<number>());
    const keepaliveBytes = new Set<number>();
    // What the proxies really add: ping-pongs through one more proxy, throttled alike, in front of an echo server on loopback.
    echo = net.createServer((socket) => socket.on("data", (chunk) => socket.write(chunk)).on("error", () => undefined));
    await new Promise<void>((resolve) => echo!.listen(0, "127.0.0.1", resolve));
    const probe = await TcpProxy.start({ address: "127.0.0.1", port: (echo.address() as AddressInfo).port }, { handshake: true });
    proxies.push(probe);
    const addedRtt = new Map<Rtt, number[]>(RTTS.map((rtt) => [rtt, []]));
    const measureRtt = async (rtt: Rtt) => {
      const socket = net.connect(probe.port, "127.0.0.1");
      socket.setNoDelay(true);
      const failed = new Promise<never>((_, reject) => socket.once("error", reject));
      failed.catch(() => undefined);
      try {
        await Promise.race([new Promise((resolve) => socket.once("connect", resolve)), failed]);
        for (let i = 0; i < 10; i++) {
          const sent = performance.now();
          await Promise.race([
            new Promise((resolve) => {
              socket.once("data", resolve);
              socket.write("ping");
            }),
            failed,
          ]);
          addedRtt.get(rtt)!.push(performance.now() - sent);
        }
      } finally {
        socket.destroy();
      }
    };
    // The TCP and SSH handshakes alone, as Tidemark makes them: an SshSession through the first host's proxy, counted up to its login.
    const handshakes = new Map<Rtt, number[]>(RTTS.map((rtt) => [rtt, []]));
    const measureHandshake = async (rtt: Rtt) => {
      const [{ name, hostKey, proxy }, log] = [hosts[0]!, turnLog[0]!];
      const [accepted, from] = [proxy.counts.accepted, log.length];
      const target = { name, address: "127.0.0.1", port: proxy.port, user: "root", hostKey };
      const session = await SshSession.connect(target, { privateKey: readFileSync(bed.clientKeyPath) });
      // Only this connection's turns (not a keepalive of serve's), and none after the login: the host's unasked messages then, and the close, are not the handshake's.
      const turns = log.slice(from).filter((turn) => turn.connection > accepted).length;
      session.close();
      handshakes.get(rtt)!.push(proxy.counts.accepted - accepted + turns);
      // sshd's log lines of this login reach the journal a moment later: not in the next tool's count.
      await sleep(300);
    };
    const knownHosts = join(dir, "known_hosts");
    writeFileSync(knownHosts, hosts.map((host) => `[127.0.0.1]:${host.proxy.port} ${host.hostKey}\n`).join(""));
    const unit = (name: string, base: string) => `[Unit]\nDescription=${name}\n\n[Service]\nExecStart=/bin/sh ${base}/run.sh\n`;
    const PEERS = { rsync: "/srv/rsync", floor: "/srv/floor", ansible: "/srv/ansible" } as const;
    await Promise.all(
      hosts.map((host) =>
        bed.inHost(host.name, [
          "sh",
          "-c",
          [
            // VERBOSE: sshd logs "Starting session: command ..." for every exec channel, "... subsystem 'sftp'" for SFTP.
            "printf 'LogLevel VERBOSE\\n' > /etc/ssh/sshd_config.d/00-bench-log.conf",
            "systemctl reload ssh.service",
            // The peers' units, installed once by hand, as a person using rsync or Ansible would.
            ...Object.entries(PEERS).map(
              ([name, base]) =>
                `mkdir -p ${base} && printf '%s' ${q(unit(`bench-${name}`, base))} > /etc/systemd/system/bench-${name}.service`,
            ),
            "systemctl daemon-reload",
            `systemctl enable --quiet ${Object.keys(PEERS)
              .map((name) => `bench-${name}.service`)
              .join(" ")}`,
          ].join(" && "),
        ]),
      ),
    );

    // --- The app: 49 static files and run.sh (50 files, ~200 KB), and a unit.
    const staticFile = (i: number, version: number) => `${i === 0 ? version : 0}\n${"x".repeat(4000)}\n`;
    const appFiles = (version: number) => ({
      ...Object.fromEntries(Array.from({ length: STATIC_FILES }, (_, i) => [`static/file${i}.txt`, staticFile(i, version)])),
      "run.sh": "exec sleep infinity\n",
    });
    const appBytes = Object.values(appFiles(0)).reduce((sum, content) => sum + content.length, 0);
    const tidemarkApp = (version: number) => ({
      ...appFiles(version),
      "systemd/bench.service": unit("bench", "/var/lib/tidemark/apps/bench/current"),
      "manifest.json": JSON.stringify({ systemd: { units_enabled: ["bench.service"] } }),
    });
    const inventory = hosts
      .map((host) => `  ${host.name}: { address: 127.0.0.1, port: ${host.proxy.port}, hostKey: "${host.hostKey}" }`)
      .join("\n");
    const config = `environments:\n  ${ENV}: { track: { branch: main }, tree: fleet }\nhosts:\n${inventory}\nrollout: { maxParallel: ${HOSTS}, canary: 0, maxFailures: ${HOSTS} }\n`;
    let version = 0;
    await work.commit(
      {
        "tidemark.yaml": config,
        ...Object.fromEntries(
          hosts.flatMap((host) =>
            Object.entries(tidemarkApp(version)).map(([path, content]) => [`fleet/${host.name}/bench/${path}`, content]),
          ),
        ),
      },
      "v0",
    );
    await work.push("main");
    /** A one-file change for every host; the commit's sha. */
    const tidemarkCommit = (v: number) =>
      work.commit(Object.fromEntries(hosts.map((host) => [`fleet/${host.name}/bench/static/file0.txt`, staticFile(0, v)])), `v${v}`);

    // One store for the CLI and serve, which take turns (each its own mirror of the source repo): every deployment is a one-file change.
    const store = join(dir, "store.git");
    const base = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      TIDEMARK_REPO: bed.forge!.cloneUrl(bed.forgeRepo),
      TIDEMARK_STORE: store,
      TIDEMARK_SSH_KEY: bed.clientKeyPath,
    };
    const cliEnv = { ...base, TIDEMARK_MIRRORS: join(dir, "cli-mirrors") };
    const serveEnv = {
      ...base,
      TIDEMARK_MIRRORS: join(dir, "serve-mirrors"),
      TIDEMARK_REDIS_URL: bed.redis!.url,
      TIDEMARK_WEBHOOK_SECRET: bed.webhookSecret,
      TIDEMARK_LISTEN: "127.0.0.1:0",
      TIDEMARK_POLL_INTERVAL: "0",
      TIDEMARK_SETTLE: String(SETTLE),
    };

    const local = join(dir, "app");
    mkdirSync(join(local, "static"), { recursive: true });
    for (const [path, content] of Object.entries(appFiles(0))) writeFileSync(join(local, path), content);
    const writeLocal = (v: number) => writeFileSync(join(local, "static/file0.txt"), staticFile(0, v));

    // --- The peers, as scripts a person would write: every host in parallel.
    const ssh = `ssh -i ${bed.clientKeyPath} -o UserKnownHostsFile=${knownHosts} -o StrictHostKeyChecking=yes -o BatchMode=yes`;
    const fresh = `${ssh} -o ControlMaster=no -o ControlPath=none`;
    const viaMaster = `${ssh} -o ControlMaster=no -o ControlPath=${sockets}/%C`;
    const restart = (name: string) =>
      q(`systemctl restart bench-${name}.service && sleep ${SETTLE} && systemctl is-active --quiet bench-${name}.service`);
    const script = (name: "rsync" | "floor", sshCommand: string) => {
      const path = join(dir, `${name}.sh`);
      const lines = hosts.map(
        (host) =>
          `( rsync -a --delete -e ${q(`${sshCommand} -p ${host.proxy.port}`)} ${q(`${local}/`)} root@127.0.0.1:${PEERS[name]}/ && ${sshCommand} -p ${host.proxy.port} root@127.0.0.1 ${restart(name)} ) & pids="$pids $!"`,
      );
      writeFileSync(
        path,
        ["pids=", ...lines, "status=0", 'for pid in $pids; do wait "$pid" || status=1; done', "exit $status", ""].join("\n"),
      );
      return path;
    };
    const scripts = { rsync: script("rsync", fresh), floor: script("floor", viaMaster) };
    const shell = async (name: "rsync" | "floor") => {
      const result = await timedRun("sh", [scripts[name]], { cpu: true });
      if (result.code !== 0) throw new Error(`${name} exited ${String(result.code)}: ${result.stderr.slice(-2000)}`);
      return result;
    };

    writeFileSync(
      join(dir, "inventory.ini"),
      `[fleet]\n${hosts.map((host) => `${host.name} ansible_host=127.0.0.1 ansible_port=${host.proxy.port} ansible_user=root`).join("\n")}\n`,
    );
    writeFileSync(
      join(dir, "playbook.yml"),
      [
        "- hosts: fleet",
        "  gather_facts: false",
        "  tasks:",
        "    - ansible.posix.synchronize:",
        `        src: ${local}/`,
        `        dest: ${PEERS.ansible}/`,
        "        delete: true",
        "        verify_host: true",
        "        use_ssh_args: true",
        "      register: app",
        "    - ansible.builtin.systemd: { name: bench-ansible.service, state: restarted }",
        "      when: app.changed",
        `    - ansible.builtin.shell: sleep ${SETTLE} && systemctl is-active bench-ansible.service`,
        "      changed_when: false",
        "",
      ].join("\n"),
    );
    let ansibleRuns = 0;
    const ansible = async () => {
      // Ansible's own ssh settings (ControlPersist 60 s): each run starts cold, in a control dir of its own, emptied after it.
      const controlDir = join(sockets, `a${++ansibleRuns}`);
      const env = {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        ANSIBLE_HOME: join(dir, "ansible-home"),
        ANSIBLE_LOCAL_TEMP: join(dir, "ansible-tmp"),
        ANSIBLE_SSH_CONTROL_PATH_DIR: controlDir,
        ANSIBLE_HOST_KEY_CHECKING: "True",
        ANSIBLE_SSH_COMMON_ARGS: `-o UserKnownHostsFile=${knownHosts} -o StrictHostKeyChecking=yes`,
        ANSIBLE_PRIVATE_KEY_FILE: bed.clientKeyPath,
        ANSIBLE_FORKS: String(HOSTS),
        ANSIBLE_PIPELINING: "True",
        ANSIBLE_PYTHON_INTERPRETER: "/usr/bin/python3",
        ANSIBLE_NOCOLOR: "1",
      };
      try {
        const result = await timedRun("ansible-playbook", ["-i", join(dir, "inventory.ini"), join(dir, "playbook.yml")], {
          env,
          cpu: true,
        });
        if (result.code !== 0) throw new Error(`ansible-playbook exited ${String(result.code)}:\n${result.stdout.slice(-3000)}`);
        return result;
      } finally {
        await closeMasters(controlDir);
      }
    };

    const cli = async (sha: string) => {
      const result = await timedRun(process.execPath, [BIN, "deploy", ENV, "--yes", "--json", "--settle", String(SETTLE)], {
        env: cliEnv,
        cpu: true,
      });
      const outcomes = result.stdout.startsWith("{")
        ? (JSON.parse(result.stdout) as { sourceCommit: string; hosts: Array<{ host: string; outcome: string; detail?: string }> })
        : undefined;
      const bad = outcomes?.hosts.filter((host) => host.outcome !== "deployed") ?? [];
      if (result.code !== 0 || !outcomes || bad.length > 0 || outcomes.sourceCommit !== sha) {
        throw new Error(
          `tidemark deploy did not deploy ${sha.slice(0, 7)} everywhere (exit ${String(result.code)}): ${bad.map((host) => `${host.host} ${host.outcome} ${host.detail ?? ""}`).join("; ")}\n${result.stderr.slice(-3000)}`,
        );
      }
      return result;
    };
    const history = async (sha: string): Promise<HistoryEntry> => {
      const result = await timedRun(process.execPath, [BIN, "history", ENV, "--json", "--limit", "1"], { env: cliEnv });
      const entry = (JSON.parse(result.stdout) as HistoryEntry[])[0];
      if (entry?.sourceCommit !== sha || !entry.startedAt)
        throw new Error(`the store's last deployment of ${ENV} is not ${sha.slice(0, 7)}: ${result.stdout.slice(0, 2000)}`);
      return entry;
    };

    // --- serve: started once; the forge's webhook reaches it through a relay that lets only serve's own pushes through.
    let relayOpen = false;
    let serveUrl = "";
    const relayServer = createServer((request, response) => {
      const body: Buffer[] = [];
      request.on("data", (chunk: Buffer) => body.push(chunk));
      request.on("end", () => {
        if (!relayOpen) return void response.writeHead(202).end("{}");
        const headers = Object.fromEntries(
          Object.entries(request.headers)
            .filter(([name]) => !["host", "connection", "content-length"].includes(name))
            .map(([name, value]) => [name, String(value)]),
        );
        fetch(`${serveUrl}${request.url ?? "/"}`, { method: request.method, headers, body: Buffer.concat(body) }).then(
          async (answer) =>
            response
              .writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "application/json" })
              .end(Buffer.from(await answer.arrayBuffer())),
          (error: unknown) => response.writeHead(502).end(String(error)),
        );
      });
    });
    relay = relayServer;
    await new Promise<void>((resolve) => relayServer.listen(0, "127.0.0.1", resolve));
    await bed.forge!.addHook(bed.forgeRepo, {
      url: `http://127.0.0.1:${(relayServer.address() as AddressInfo).port}/webhooks/github`,
      secret: bed.webhookSecret,
    });
    const serveLines = () =>
      readFileSync(serve!.log, "utf8")
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    const serveLine = (what: string, match: (line: Record<string, unknown>) => boolean, timeoutMs = 120_000) =>
      waitFor(
        `tidemark serve: ${what}`,
        () => {
          const line = serveLines().find(match);
          if (line) return line;
          if (!isAlive(serve!.pid)) throw new GiveUp(`tidemark serve exited:\n${readFileSync(serve!.log, "utf8").slice(-4000)}`);
          return undefined;
        },
        { timeoutMs, intervalMs: 20 },
      );
    const startServe = async () => {
      serve = bed.spawn("tidemark-serve", process.execPath, [BIN, "serve"], serveEnv);
      serveUrl = String((await serveLine("started", (line) => line.msg === "tidemark serve started", 60_000)).url);
    };
    const serveDeploy = async (sha: string) => {
      relayOpen = true;
      try {
        const pushed = Date.now();
        await work.push("main");
        const done = await serveLine(
          `deployment of ${sha.slice(0, 7)}`,
          (line) => line.commit === sha && typeof line.msg === "string" && /: deployment (succeeded|failed|unreachable)$/.test(line.msg),
        );
        if (done.outcome !== "succeeded")
          throw new Error(`tidemark serve: deployment of ${sha.slice(0, 7)} ${String(done.outcome)}: ${JSON.stringify(done.hosts)}`);
        const started = await serveLine(
          "deployment started",
          (line) => line.msg === `${ENV}: deployment started` && line.requested === sha,
        );
        return { pushed, started: started.time as number, done: done.time as number };
      } finally {
        relayOpen = false;
      }
    };
    /** A push that serve must not see (the CLI's turns): the forge's delivery is over, and dropped, before the CLI starts. */
    const quietPush = async () => {
      await work.push("main");
      await bed.forge!.deliveries();
    };

    // --- The floor's connections: one ControlMaster per host, opened before anything is timed.
    const openMasters = async () => {
      for (const host of hosts) {
        const args = [...viaMaster.split(" ").slice(1), "-p", String(host.proxy.port), "root@127.0.0.1"];
        const master = args.map((arg) => (arg === "ControlMaster=no" ? "ControlMaster=yes" : arg));
        // -f: backgrounds once logged in; its output goes to a file, not to a pipe that would stay open.
        const errors = openSync(join(dir, `master-${host.name}.log`), "a");
        const code = await new Promise<number | null>((resolve) =>
          spawn("ssh", ["-o", "ControlPersist=yes", "-f", "-N", ...master], { stdio: ["ignore", errors, errors] }).on("exit", resolve),
        );
        closeSync(errors);
        const check = await run("ssh", ["-O", "check", ...args], { allowFailure: true });
        const pid = Number(/pid=(\d+)/.exec(check.stderr)?.[1]);
        masters.push({ host: host.name, pid: Number.isInteger(pid) ? pid : undefined, args });
        if (code !== 0 || !Number.isInteger(pid))
          throw new Error(
            `no ControlMaster for ${host.name}: ${readFileSync(join(dir, `master-${host.name}.log`), "utf8")}${check.stderr}`,
          );
      }
    };
    const closeMasters = async (controlDir: string) => {
      let names: string[];
      try {
        names = readdirSync(controlDir);
      } catch {
        return;
      }
      for (const name of names)
        await run("ssh", ["-O", "exit", "-o", `ControlPath=${join(controlDir, name)}`, "bench-host"], { allowFailure: true });
      rmSync(controlDir, { recursive: true, force: true });
    };

    // --- Counting, per host: the proxy's connections, turns and bytes; sshd's sessions and logins (its journal, read from outside the container, not over SSH).
    const cursors = () =>
      Promise.all(
        hosts.map(async (host) => {
          const cursor = /^-- cursor: (.+)$/m.exec(await bed.inHost(host.name, ["journalctl", "-n", "0", "--show-cursor", "-q"]))?.[1];
          if (!cursor) throw new Error(`no journal cursor on ${host.name}`);
          return cursor;
        }),
      );
    const proxyCounts = () =>
      hosts.map((host, i) => ({
        connections: host.proxy.counts.accepted,
        turns: turnLog[i]!.length,
        bytes: host.proxy.bytes.up + host.proxy.bytes.down,
      }));
    const hostsCpu = () => hosts.reduce((sum, host) => sum + bed.cpuSeconds(host.name), 0);
    const window = async () => {
      const [from, before] = [await cursors(), proxyCounts()];
      const cpuBefore = {
        hosts: hostsCpu(),
        machine: machineCpuSeconds(),
        serve: serve ? bed.cpuSeconds("tidemark-serve") : 0,
        at: performance.now(),
      };
      return async (): Promise<{
        counts: Array<Omit<HostCount, "roundTrips" | "keepalives" | "keepalivesWithin"> & { turns: Turn[] }>;
        cpu: Cpu;
      }> => {
        const cpu: Cpu = {
          hosts: hostsCpu() - cpuBefore.hosts,
          machine: machineCpuSeconds() - cpuBefore.machine,
          serve: (serve ? bed.cpuSeconds("tidemark-serve") : 0) - cpuBefore.serve,
          ms: performance.now() - cpuBefore.at,
          tool: Number.NaN,
        };
        // sshd's lines reach the journal a moment after the fact.
        await sleep(300);
        const after = proxyCounts();
        const counts = await Promise.all(
          hosts.map(async (host, i) => {
            const lines = await bed.inHost(host.name, [
              "journalctl",
              "-u",
              "ssh.service",
              `--after-cursor=${from[i]!}`,
              "-o",
              "cat",
              "-q",
              "--no-pager",
            ]);
            const count = (pattern: RegExp) => lines.split("\n").filter((line) => pattern.test(line)).length;
            return {
              connections: after[i]!.connections - before[i]!.connections,
              turns: turnLog[i]!.slice(before[i]!.turns, after[i]!.turns),
              bytes: after[i]!.bytes - before[i]!.bytes,
              execs: count(/^Starting session: command /),
              sftp: count(/^Starting session: subsystem 'sftp'/),
              logins: count(/^Accepted publickey /),
            };
          }),
        );
        return { counts, cpu };
      };
    };
    const verify = async (tool: Tool, v: number) => {
      const [path, service] =
        tool === "cli" || tool === "serve" ? ["/var/lib/tidemark/apps/bench/current", "bench"] : [PEERS[tool], `bench-${tool}`];
      await Promise.all(
        hosts.map(async (host) => {
          const seen = await bed.inHost(host.name, [
            "sh",
            "-c",
            `head -n1 ${path}/static/file0.txt; systemctl is-active ${service}.service || true`,
          ]);
          if (seen !== `${v}\nactive\n`)
            throw new Error(`${tool}: ${host.name} has ${JSON.stringify(seen)}, not version ${v} with ${service}.service active`);
        }),
      );
    };
    /** Each host's deployment in a record: from its connect to its done, in ms since the epoch. */
    const hostSpans = (entry: HistoryEntry) => {
      const startedAt = Date.parse(entry.startedAt!);
      const at = (host: HistoryEntry["hosts"][number], phase: string) =>
        startedAt + (host.timeline?.find((step) => step.phase === phase)?.at ?? Number.NaN);
      return new Map(entry.hosts.map((host) => [host.host, [at(host, "connect"), at(host, "done")] as [number, number]]));
    };
    const phases = (entry: HistoryEntry, start: number, end: number): Phases & { final: number } => {
      const startedAt = Date.parse(entry.startedAt!);
      const steps = new Map<string, number[]>();
      let last = 0;
      for (const host of entry.hosts) {
        const timeline = host.timeline ?? [];
        for (let i = 0; i + 1 < timeline.length; i++)
          steps.set(timeline[i]!.phase, [...(steps.get(timeline[i]!.phase) ?? []), timeline[i + 1]!.at - timeline[i]!.at]);
        last = Math.max(last, timeline.find((step) => step.phase === "done")?.at ?? Number.NaN);
      }
      return { before: startedAt - start, rollout: last, after: end - (startedAt + last), steps, final: startedAt + last };
    };

    // --- One measured run of a tool: the change is made first (a commit, or the local files), then the tool, then the counts and a check of every host.
    const samples: Sample[] = [];
    const once = async (tool: Tool, rtt: Rtt, v: number): Promise<Sample> => {
      let sha = "";
      if (tool === "cli") {
        sha = await tidemarkCommit(v);
        await quietPush();
      } else if (tool === "serve") sha = await tidemarkCommit(v);
      const counted = await window();
      let sample: Omit<Sample, "hosts" | "cpu" | "keepaliveGaps">;
      let toolCpu: number;
      let measured: Awaited<ReturnType<typeof counted>>;
      let deploying: Map<string, [number, number]> | undefined;
      if (tool === "cli") {
        const result: ChildRun = await cli(sha);
        measured = await counted();
        toolCpu = result.cpuSeconds!;
        const { final: _, ...spent } = phases(await history(sha), result.startedAt, result.endedAt);
        sample = { tool, rtt, ms: result.ms, phases: spent };
      } else if (tool === "serve") {
        const { pushed, started, done } = await serveDeploy(sha);
        measured = await counted();
        toolCpu = measured.cpu.serve;
        const entry = await history(sha);
        deploying = hostSpans(entry);
        const { final, ...spent } = phases(entry, started, done);
        sample = { tool, rtt, ms: final - started, fromPush: final - pushed, phases: spent };
      } else {
        const result = tool === "ansible" ? await ansible() : await shell(tool);
        measured = await counted();
        toolCpu = result.cpuSeconds!;
        sample = { tool, rtt, ms: result.ms };
      }
      const { counts, cpu } = measured;
      await verify(tool, v);
      if (tool === "floor" && counts.some((count) => count.connections > 0))
        throw new Error(
          `the floor opened new connections (${counts.map((count) => count.connections).join(", ")}): a ControlMaster is gone`,
        );
      // serve's kept connections share the proxies with every tool, and ssh2 sends a keepalive on each every few seconds, busy or not.
      // A turn on one is serve's from the host's connect to its done in serve's record; at any other time the connection idles, and
      // the turn is a keepalive. Within the deployment, a turn that the client began with exactly a keepalive's bytes is one too
      // (serve's scripts are larger, and on a host where it opened no channel it sends nothing else).
      const keepaliveGaps: number[] = [];
      const hostCounts = counts.map(({ turns, ...count }, i) => {
        const span = deploying?.get(hosts[i]!.name);
        const within = (turn: Turn) => span !== undefined && turn.at >= span[0] && turn.at <= span[1];
        const idle = turns.filter((turn) => (span ? !within(turn) : serveConnections[i]!.has(turn.connection)));
        for (const turn of idle) keepaliveBytes.add(turn.asked);
        for (const turn of turns.filter(within)) serveConnections[i]!.add(turn.connection);
        const busy = turns.filter((turn) => within(turn) && count.execs === 0 && keepaliveBytes.has(turn.asked));
        for (const [j, turn] of idle.entries()) {
          const next = idle.slice(j + 1).find((later) => later.connection === turn.connection);
          if (next) keepaliveGaps.push(next.at - turn.at);
        }
        const keepalives = idle.length + busy.length;
        return { ...count, roundTrips: count.connections + turns.length - keepalives, keepalives, keepalivesWithin: busy.length };
      });
      return { ...sample, hosts: hostCounts, cpu: { ...cpu, tool: toolCpu }, keepaliveGaps };
    };

    // Round 0 puts everything in place (full uploads, units started, serve's first job, warm caches); it is not measured.
    log(`round 0: first deployment with every tool (not measured)`);
    await cli(await work.head());
    await startServe();
    await once("serve", 0, ++version);
    version++;
    writeLocal(version);
    for (const name of ["rsync", "floor"] as const) await shell(name).then(() => verify(name, version));
    await ansible().then(() => verify("ansible", version));
    await openMasters();
    await once("floor", 0, version);

    for (let round = 1; round <= ROUNDS; round++) {
      // Alternate the order per round (tools and latencies), so that none always runs on a warmer machine.
      const rtts = round % 2 === 1 ? RTTS : [...RTTS].reverse();
      const order = round % 2 === 1 ? TOOLS : [...TOOLS].reverse();
      for (const rtt of rtts) {
        for (const proxy of proxies) proxy.throttle({ latencyMs: rtt / 2, handshake: true });
        await measureRtt(rtt);
        await measureHandshake(rtt);
        const local = ++version;
        writeLocal(local);
        const line: string[] = [];
        for (const tool of order) {
          const sample = await once(tool, rtt, tool === "cli" || tool === "serve" ? ++version : local);
          samples.push(sample);
          line.push(
            `${tool} ${ms(sample.ms)}${sample.fromPush === undefined ? "" : ` (push ${ms(sample.fromPush)})`}${sample.phases ? ` [before the rollout ${ms(sample.phases.before)}]` : ""}`,
          );
        }
        log(`round ${round}/${ROUNDS}, +${rtt} ms RTT: ${line.join(", ")}`);
      }
    }
    return report(samples, appBytes, addedRtt, handshakes);
  } finally {
    for (const master of masters) {
      await run("ssh", ["-O", "exit", ...master.args], { allowFailure: true });
      if (master.pid !== undefined && isAlive(master.pid)) process.kill(master.pid, "SIGTERM");
    }
    if (serve && isAlive(serve.pid)) {
      process.kill(serve.pid, "SIGTERM");
      await waitFor("tidemark serve to stop", () => !isAlive(serve!.pid), { timeoutMs: 30_000 }).catch(() => undefined);
    }
    relay?.close();
    echo?.close();
    for (const proxy of proxies) await proxy.close();
    work.remove();
    rmSync(dir, { recursive: true, force: true });
    rmSync(sockets, { recursive: true, force: true });
    await bed.down();
  }
};
export default bench;

const SHORT: Record<Tool, string> = {
  cli: "`tidemark deploy`",
  serve: "`tidemark serve`",
  rsync: "rsync, fresh connections",
  floor: "rsync over ControlMaster (the floor)",
  ansible: "Ansible `synchronize`",
};
const LABELS: Record<Tool, string> = {
  cli: `\`tidemark deploy\` (built CLI, a child process; canary 0, settle ${SETTLE} s)`,
  serve: "`tidemark serve`, the deployment's start to every host final",
  rsync: `\`rsync -a --delete\` + \`ssh\` restart, settle ${SETTLE} s, \`is-active\`; fresh connections`,
  floor: "the same over OpenSSH ControlMaster connections opened before (the floor)",
  ansible: `Ansible: \`synchronize\` + \`systemd\` restart + check task (forks ${HOSTS}, pipelining)`,
};

function report(samples: Sample[], appBytes: number, addedRtt: Map<Rtt, number[]>, handshakes: Map<Rtt, number[]>): BenchSection[] {
  const of = (tool: Tool, rtt: Rtt) => samples.filter((sample) => sample.tool === tool && sample.rtt === rtt);
  const time = (tool: Tool, rtt: Rtt) => median(of(tool, rtt).map((sample) => sample.ms));
  const push = (rtt: Rtt) => median(of("serve", rtt).map((sample) => sample.fromPush!));
  const perHost = (tool: Tool, key: keyof HostCount, rtts: readonly Rtt[] = RTTS) =>
    median(rtts.flatMap((rtt) => of(tool, rtt).flatMap((sample) => sample.hosts.map((host) => host[key]))));
  const rounds = of("cli", 0).length;
  const cpuOf = (tool: Tool, key: "tool" | "hosts") =>
    median(
      of(tool, 0)
        .concat(of(tool, 50))
        .map((sample) => sample.cpu[key] / HOSTS),
    );
  const busy = (tool: Tool) =>
    median(
      of(tool, 0)
        .concat(of(tool, 50))
        .map((sample) => sample.cpu.machine / (sample.cpu.ms / 1000)),
    );
  const goal = (met: boolean) => (met ? "met" : "missed");
  const timeCells = (values: (rtt: Rtt) => number[], rtt: Rtt) => {
    const figure = median(values(rtt));
    return [spread(values(rtt), ms), ratio(figure, time("rsync", rtt)), ratio(figure, time("floor", rtt))];
  };
  const countCells = (tool: Tool) => [
    String(perHost(tool, "connections")),
    String(perHost(tool, "execs")),
    String(perHost(tool, "sftp")),
    RTTS.map((rtt) => perHost(tool, "roundTrips", [rtt])).join(" / "),
    kib(perHost(tool, "bytes")),
    `${((time(tool, 50) - time(tool, 0)) / 50).toFixed(1)}`,
  ];
  const rows = TOOLS.flatMap((tool) => {
    const row = [
      LABELS[tool],
      ...RTTS.flatMap((rtt) => timeCells((r) => of(tool, r).map((sample) => sample.ms), rtt)),
      ...countCells(tool),
    ];
    if (tool !== "serve") return [row];
    const fromPush = [
      "`tidemark serve`, from the push to every host final (printed apart)",
      ...RTTS.flatMap((rtt) => timeCells((r) => of("serve", r).map((sample) => sample.fromPush!), rtt)),
      "",
      "",
      "",
      "",
      "",
      `${((push(50) - push(0)) / 50).toFixed(1)}`,
    ];
    return [row, fromPush];
  });

  // Where Tidemark's time went, from its own records: the start to the rollout, each host's phases, the rollout, the record.
  const phaseRows = (["cli", "serve"] as const).flatMap((tool) =>
    RTTS.map((rtt) => {
      const runs = of(tool, rtt).map((sample) => sample.phases!);
      const step = (phase: string) => median(runs.flatMap((run) => run.steps.get(phase) ?? []));
      return [
        `${tool === "cli" ? "`tidemark deploy`" : "`tidemark serve`"}, +${rtt} ms`,
        ms(median(runs.map((run) => run.before))),
        ...PHASES.map((phase) => ms(step(phase))),
        ms(median(runs.map((run) => run.rollout))),
        ms(median(runs.map((run) => run.after))),
      ];
    }),
  );
  const cause = (tool: "cli" | "serve", rtt: Rtt) => {
    const runs = of(tool, rtt).map((sample) => sample.phases!);
    const step = (phase: string) => median(runs.flatMap((run) => run.steps.get(phase) ?? []));
    const start = tool === "cli" ? "the process's start" : "the job's start";
    return `at +${rtt} ms, ${ms(median(runs.map((run) => run.before)))} from ${start} to the first connect (${tool === "cli" ? "Node's start, " : ""}fetch, plan, store import), then per host ${PHASES.map((phase) => `${phase} ${ms(step(phase))}`).join(", ")} (the check holds the ${SETTLE} s settle), ${ms(median(runs.map((run) => run.after)))} after the last host (record${tool === "cli" ? ", exit" : ""})`;
  };
  const cpuNote = (tool: Tool, peer: Tool) =>
    `CPU per host: ${SHORT[tool]}'s process ${(cpuOf(tool, "tool") * 1000).toFixed(0)} ms and the host's side ${(cpuOf(tool, "hosts") * 1000).toFixed(0)} ms, against ${(cpuOf(peer, "tool") * 1000).toFixed(0)} ms and ${(cpuOf(peer, "hosts") * 1000).toFixed(0)} ms for ${SHORT[peer]}; with every host at once on ${cpus().length} cores (${busy(tool).toFixed(2)} busy), the hosts' side alone needs ${ms((cpuOf(tool, "hosts") * HOSTS * 1000) / cpus().length)} of the machine`;
  const counted = (tool: Tool) =>
    `${perHost(tool, "connections")} TCP connection(s), ${perHost(tool, "execs")} exec channel(s), ${perHost(tool, "sftp")} SFTP channel(s) and ${perHost(tool, "roundTrips", [50])} round trips per host`;

  const notes: string[] = [];
  for (const rtt of RTTS) {
    const r = time("cli", rtt) / time("rsync", rtt);
    notes.push(
      `\`tidemark deploy\` takes ${ratio(time("cli", rtt), time("rsync", rtt))} the time of rsync over fresh connections at +${rtt} ms (${ms(time("cli", rtt))} vs ${ms(time("rsync", rtt))}); goal: at most 1.0× (${goal(r <= 1)}).${r <= 1 ? "" : ` Where the time went: ${cause("cli", rtt)}; Tidemark used ${counted("cli")}, rsync ${counted("rsync")}. ${cpuNote("cli", "rsync")}.`}`,
    );
  }
  for (const rtt of RTTS) {
    const r = time("serve", rtt) / time("floor", rtt);
    notes.push(
      `\`tidemark serve\`, the deployment's start to every host final, takes ${ratio(time("serve", rtt), time("floor", rtt))} the floor's time at +${rtt} ms (${ms(time("serve", rtt))} vs ${ms(time("floor", rtt))}); goal: at most 1.0× with warm connections (${goal(r <= 1)}).${r <= 1 ? "" : ` Where the time went: ${cause("serve", rtt)}; serve used ${counted("serve")}, the floor ${counted("floor")}. ${cpuNote("serve", "floor")}.`}`,
    );
  }
  const [opened, logins, shells] = (["connections", "logins", "execs"] as const).map((key) => perHost("serve", key));
  notes.push(
    `Warm connections: serve opened ${opened} new TCP connection(s), ${logins} SSH login(s) and ${shells} exec channel(s) per host per deployment (counted by the proxy and sshd): ${opened === 0 && logins === 0 ? `it kept each host's connection${shells === 0 ? " and the shell on it" : ""} from one deployment to the next, so what is measured is serve with warm connections` : "it did not keep its connections between deployments, so what is measured is not serve with warm connections"}.`,
  );
  const byRtt = (value: (rtt: Rtt) => number | string) => RTTS.map(value).join(" / ");
  const handshake = (rtt: Rtt) => median(handshakes.get(rtt)!);
  /** The round trips after the SSH handshake: those of the tool's new connections taken off. */
  const afterHandshake = (tool: Tool, rtt: Rtt) =>
    perHost(tool, "roundTrips", [rtt]) - perHost(tool, "connections", [rtt]) * handshake(rtt);
  for (const tool of ["cli", "serve"] as const) {
    const [execs, connections] = [perHost(tool, "execs"), perHost(tool, "connections")];
    const split =
      connections > 0
        ? `, of which ${byRtt((rtt) => connections * handshake(rtt))} the TCP and SSH handshakes of its ${connections} new connection(s) (measured alone, see below) and ${byRtt((rtt) => afterHandshake(tool, rtt))} after them${execs > 0 ? ", the exec channel's open and its exec request included" : ""}`
        : ", all after the handshake (a kept connection)";
    const met = execs <= 1 && RTTS.every((rtt) => afterHandshake(tool, rtt) <= 3);
    notes.push(
      `${SHORT[tool]} per healthy host: ${execs} exec channel(s) (+${perHost(tool, "sftp")} SFTP) and ${byRtt((rtt) => perHost(tool, "roundTrips", [rtt]))} round trips (+0 / +50 ms)${split}; goal: one exec channel and at most 3 round trips after the SSH handshake (${goal(met)}).`,
    );
  }
  const [serveRuns, otherRuns] = [samples.filter((sample) => sample.tool === "serve"), samples.filter((sample) => sample.tool !== "serve")];
  const total = (runs: Sample[], key: "keepalives" | "keepalivesWithin") =>
    runs.reduce((sum, sample) => sum + sample.hosts.reduce((count, host) => count + host[key], 0), 0);
  const gaps = samples.flatMap((sample) => sample.keepaliveGaps);
  notes.push(
    `Keepalives: serve keeps each host's connection open between deployments, and ssh2 sends a keepalive on it (SshSession's keepaliveInterval: a global request and its reply) on a timer that traffic does not reset${gaps.length > 0 ? `, ${(median(gaps) / 1000).toFixed(1)} s apart on one connection (median of ${gaps.length} gaps)` : ""}. The connection goes through the same proxy as every tool: its keepalives are counted apart, out of every tool's round trips. In serve's ${serveRuns.length} runs of ${HOSTS} hosts, ${total(serveRuns, "keepalives")}, of which ${total(serveRuns, "keepalivesWithin")} within a host's deployment (from its connect to its done in serve's record; told by their size: a turn the client began with exactly the bytes of those outside); in the other tools' ${otherRuns.length} runs, ${total(otherRuns, "keepalives")}.`,
    `The handshakes alone: an SshSession (Tidemark's own connect: the bed's client key, the host's pinned key) opened through the first host's proxy before each step, counted up to its login (1 TCP handshake and the turns on that connection): ${byRtt(handshake)} round trips at +0 / +50 ms, medians of ${handshakes.get(0)!.length} (${byRtt((rtt) => handshakes.get(rtt)!.join(", "))}).`,
  );
  notes.push(
    "Counts, per host and run, medians over hosts and runs: TCP connections are those the host's proxy accepted; exec and SFTP channels are the sessions sshd started (`Starting session: command` and `subsystem 'sftp'` in its journal at `LogLevel VERBOSE`, read from outside the container); a round trip is a TCP handshake (one per connection) or a turn, data from the host after data from the client since the host last spoke (the times the client spoke and then heard back: pipelined requests share one; bytes the host sends unasked make none), counted by the proxy at +0 and +50 ms, keepalives apart (see above). Bytes are both directions through the proxy, keepalives included. The RTT cost is (median at +50 ms − median at +0 ms) / 50 ms: the round trips the tool really waited for, one after another; on a machine whose cores are busy, waiting on the network overlaps with other hosts' CPU work, and the RTT cost falls below the round trips counted.",
    `The round trip the proxies really added, measured before each step by 10 ping-pongs through a proxy throttled alike (its timers run late on a busy machine): ${RTTS.map((rtt) => `+${rtt} ms: median ${median(addedRtt.get(rtt)!).toFixed(1)} ms (max ${Math.max(...addedRtt.get(rtt)!).toFixed(1)})`).join("; ")}.`,
  );
  const cpuRows = TOOLS.map((tool) => [
    SHORT[tool],
    `${(cpuOf(tool, "tool") * 1000).toFixed(0)} ms`,
    `${(cpuOf(tool, "hosts") * 1000).toFixed(0)} ms`,
    `${busy(tool).toFixed(2)} of ${cpus().length}`,
  ]);
  return [
    {
      title: `One-file change to ${HOSTS} systemd hosts: Tidemark, rsync, the SSH floor, Ansible`,
      setup: `A one-file change to an app of ${STATIC_FILES + 1} files (${kib(appBytes)}) with a systemd unit, restarted, settled ${SETTLE} s and checked, on ${HOSTS} systemd hosts of the test bed, every host at once, each tool in its own place on the hosts. Each tool is timed as users run it, spawn to exit (serve: its log and its record, see the row). Every tool reaches every host through a TCP proxy of the bed's, in front of each host (host keys pinned: known_hosts lines for the proxy ports), at +0 ms and at +50 ms round-trip time (25 ms each way on every chunk, order kept, and TCP's handshake charged to each new connection). \`tidemark deploy\` and \`tidemark serve\` share one store and take turns; serve hears only its own pushes. Median (min–max) of ${rounds} round(s) after an unmeasured first one; tools and latencies alternate their order each round.`,
      header: [
        "tool",
        "+0 ms: median (min–max)",
        "× rsync",
        "× floor",
        "+50 ms RTT: median (min–max)",
        "× rsync",
        "× floor",
        "TCP connections / host",
        "exec channels / host",
        "SFTP channels / host",
        "round trips / host (+0 / +50 ms)",
        "bytes / host",
        "RTT cost",
      ],
      rows,
      notes,
    },
    {
      title: "Where Tidemark's time goes",
      setup: `From Tidemark's own records (the store's deployment: the rollout's start and each host's timeline), medians over the runs and, for phases, over hosts: from the start (the CLI process's spawn; serve's \`deployment started\` line) to the rollout's start, each host's phases, the rollout's start to the last host final, and the last host final to the end (the CLI's exit; serve's \`deployment succeeded\` line).`,
      header: ["run", "before the rollout", ...PHASES, "rollout", "after the last host"],
      rows: phaseRows,
      notes: [`\`check\` includes the ${SETTLE} s settle before the units are read; \`commit\` ends when the host's record is written.`],
    },
    {
      title: "CPU per host and deployment",
      setup:
        "Medians over the runs at both latencies, divided by the hosts. The tool's CPU: user + system time of its processes (getrusage of the waited-for children, through `sh`'s `times`; serve: its process's cgroup, from the push to its `deployment succeeded` line). The hosts' CPU: their containers' cgroups (sshd, systemd, the restarted unit, what the tool ran there). Cores busy: the whole machine's busy time (`/proc/stat`) over the run's wall time, the proxies, the forge and other work on the machine included.",
      header: ["tool", "tool's CPU / host", "hosts' CPU / host", "machine: cores busy"],
      rows: cpuRows,
      notes: [],
    },
  ];
}
