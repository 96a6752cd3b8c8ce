import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../src/cli/main.js";
import { TestBed } from "../test/bed/bed.js";
import { run } from "../test/bed/proc.js";
import { WorkRepo } from "../test/bed/work-repo.js";
import { kib, median, ms, ratio } from "../test/helpers/report.js";
import type { Bench } from "./section.js";

/**
 * A one-file change deployed to 10 systemd hosts, side by side in one run:
 * Tidemark (`tidemark deploy`, from fetch to recorded outcome) vs Ansible
 * (copy of the app dir + systemd restart, forks 10) vs plain rsync over ssh
 * plus a restart, all 10 hosts in parallel. Bytes are counted on the bed's
 * one uplink. `npm run bench -- deploy`; TIDEMARK_BENCH_ROUNDS sets the rounds.
 */
const HOSTS = 10;
const FILES = 20;
const ROUNDS = Number(process.env.TIDEMARK_BENCH_ROUNDS ?? 3);
const TOOLS = ["tidemark", "ansible", "rsync"] as const;
type Tool = (typeof TOOLS)[number];

const bench: Bench = async (log) => {
  const bed = await TestBed.up({ systemdHosts: HOSTS, forge: true });
  const dir = mkdtempSync(join(tmpdir(), "tidemark-bench-deploy-"));
  const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
  const info = bed.describe();
  const uplink = `tmk${bed.id}`;
  // Both directions on the veth that is the bed's only way in: every byte any tool exchanged with the hosts.
  const wireBytes = () => ["tx_bytes", "rx_bytes"].reduce((sum, counter) => sum + Number(readFileSync(`/sys/class/net/${uplink}/statistics/${counter}`, "utf8")), 0);
  const sshOptions = ["-i", bed.clientKeyPath, "-o", `UserKnownHostsFile=${info.knownHosts}`, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"];
  const service = (name: string, base: string) => `[Unit]\nDescription=${name}\n\n[Service]\nExecStart=/bin/sh ${base}/run.sh\n`;

  try {
    // The same app for every tool, in its own place on the hosts: Tidemark's release dirs, /srv/ansible, /srv/rsync.
    const files = (version: number) => Object.fromEntries(Array.from({ length: FILES }, (_, i) => [`static/file${i}.txt`, `${i === 0 ? version : 0}\n${"x".repeat(4000)}\n`]));
    const inventory = bed.hosts.map((host) => `  ${host.name}: { address: ${host.address}, hostKey: "${host.hostKey}" }`).join("\n");
    const tidemarkTree = (version: number) =>
      Object.fromEntries(bed.hosts.flatMap((host) => Object.entries({ ...files(version), "run.sh": "exec sleep infinity\n", "systemd/bench.service": service("bench", "/var/lib/tidemark/apps/bench/current"), "manifest.json": JSON.stringify({ systemd: { units_enabled: ["bench.service"] } }) }).map(([path, content]) => [`fleet/${host.name}/bench/${path}`, content])));
    await work.commit({ "tidemark.yaml": `environments:\n  production: { track: { branch: main }, tree: fleet }\nhosts:\n${inventory}\nrollout: { maxParallel: ${HOSTS}, canary: 0, maxFailures: ${HOSTS} }\n`, ...tidemarkTree(0) }, "v0");
    await work.push("main");
    const env = { TIDEMARK_REPO: bed.forge!.cloneUrl(bed.forgeRepo), TIDEMARK_STORE: join(dir, "store.git"), TIDEMARK_MIRRORS: join(dir, "mirrors"), TIDEMARK_SSH_KEY: bed.clientKeyPath };
    // What Tidemark itself says it sent: release content only, per host (the wire count adds SSH, scripts and checks).
    const uploaded: number[] = [];
    const tidemark = async () => {
      let out = "";
      const code = await main(["node", "tidemark", "deploy", "production", "--yes", "--json", "--settle", "0"], { env, out: (text) => (out += text), err: () => undefined });
      const hosts = (JSON.parse(out) as { hosts: Array<{ outcome: string; uploadedBytes?: number }> }).hosts;
      if (code !== 0 || hosts.some((host) => host.outcome !== "deployed")) throw new Error(`tidemark deploy did not deploy everywhere: ${hosts.map((host) => host.outcome).join(", ")}`);
      uploaded.push(median(hosts.map((host) => host.uploadedBytes ?? Number.NaN)));
    };

    const local = join(dir, "app");
    const writeLocal = (version: number) => {
      mkdirSync(join(local, "static"), { recursive: true });
      for (const [path, content] of Object.entries(files(version))) writeFileSync(join(local, path), content);
      writeFileSync(join(local, "run.sh"), "exec sleep infinity\n");
    };
    writeFileSync(join(dir, "inventory.ini"), `[fleet]\n${bed.hosts.map((host) => `${host.name} ansible_host=${host.address} ansible_user=root`).join("\n")}\n`);
    writeFileSync(
      join(dir, "playbook.yml"),
      `- hosts: fleet\n  gather_facts: false\n  tasks:\n    - copy: { src: "${local}/", dest: /srv/ansible/ }\n      register: app\n    - copy: { dest: /etc/systemd/system/bench-ansible.service, content: "${service("bench-ansible", "/srv/ansible").replaceAll("\n", "\\n")}" }\n    - systemd: { name: bench-ansible.service, state: restarted, enabled: true, daemon_reload: true }\n      when: app.changed\n`,
    );
    const ansibleEnv = { ...process.env, ANSIBLE_HOST_KEY_CHECKING: "True", ANSIBLE_PRIVATE_KEY_FILE: bed.clientKeyPath, ANSIBLE_SSH_ARGS: `-o UserKnownHostsFile=${info.knownHosts} -o ControlMaster=auto -o ControlPersist=60s`, ANSIBLE_FORKS: String(HOSTS), ANSIBLE_PIPELINING: "True", ANSIBLE_PYTHON_INTERPRETER: "/usr/bin/python3" };
    const ansible = async () => {
      const { code, stdout } = await run("ansible-playbook", ["-i", join(dir, "inventory.ini"), join(dir, "playbook.yml")], { env: ansibleEnv, allowFailure: true });
      if (code !== 0) throw new Error(`ansible-playbook failed:\n${stdout.slice(-2000)}`);
    };
    const rsync = async () => {
      await Promise.all(
        bed.hosts.map(async (host) => {
          await run("rsync", ["-a", "--delete", "-e", `ssh ${sshOptions.join(" ")}`, `${local}/`, `root@${host.address}:/srv/rsync/`]);
          await run("ssh", [...sshOptions, `root@${host.address}`, "systemctl restart bench-rsync.service"]);
        }),
      );
    };
    // The rsync unit is installed once, by hand, as a person using rsync would.
    await Promise.all(bed.hosts.map((host) => run("ssh", [...sshOptions, `root@${host.address}`, `mkdir -p /srv/rsync && printf '%s' '${service("bench-rsync", "/srv/rsync")}' > /etc/systemd/system/bench-rsync.service && systemctl daemon-reload && systemctl enable bench-rsync.service`])));

    // Round 0 puts everything in place (and warms caches and connections); it is not measured.
    log("round 0: first deployment of every tool (not measured)");
    writeLocal(0);
    await tidemark();
    await ansible();
    await rsync();
    uploaded.length = 0;
    const samples: Record<Tool, Array<{ ms: number; bytes: number }>> = { tidemark: [], ansible: [], rsync: [] };
    for (let round = 1; round <= ROUNDS; round++) {
      await work.commit(tidemarkTree(round), `v${round}`);
      await work.push("main");
      writeLocal(round);
      // Alternate the order per round so that no tool always runs on a warmer machine.
      const order = round % 2 === 1 ? TOOLS : [...TOOLS].reverse();
      for (const tool of order) {
        const bytes = wireBytes();
        const start = performance.now();
        await { tidemark, ansible, rsync }[tool]();
        samples[tool].push({ ms: performance.now() - start, bytes: wireBytes() - bytes });
      }
      log(`round ${round}/${ROUNDS}: ${TOOLS.map((tool) => `${tool} ${ms(samples[tool].at(-1)!.ms)}`).join(", ")}`);
    }

    const figures = Object.fromEntries(TOOLS.map((tool) => [tool, { ms: median(samples[tool].map((s) => s.ms)), min: Math.min(...samples[tool].map((s) => s.ms)), max: Math.max(...samples[tool].map((s) => s.ms)), bytes: median(samples[tool].map((s) => s.bytes)) / HOSTS }])) as Record<Tool, { ms: number; min: number; max: number; bytes: number }>;
    const { tidemark: t, ansible: a, rsync: r } = figures;
    const labels: Record<Tool, string> = {
      tidemark: "`tidemark deploy` (fetch, plan, lock, upload, hash check, switch, restart, unit check, record; settle 0 s)",
      ansible: `Ansible (\`copy\` of the app dir + \`systemd\` restart, forks ${HOSTS}, pipelining, ControlPersist)`,
      rsync: `\`rsync -a\` over ssh + \`systemctl restart\`, ${HOSTS} hosts in parallel`,
    };
    const goal = (met: boolean) => (met ? "met" : "missed");
    return [
      {
        title: `One-file change to ${HOSTS} systemd hosts: Tidemark, Ansible, rsync`,
        setup: `A one-file change to an app of ${FILES} files (${kib(Object.values(files(0)).reduce((sum, content) => sum + content.length, 0))}) with a systemd unit, on ${HOSTS} systemd hosts of the test bed; the three tools take turns in each round, alternating the order; bytes are both directions on the bed's one uplink, divided by the hosts. Median of ${ROUNDS} rounds after an unmeasured first one.`,
        header: ["tool", "median", "min", "max", "on the wire per host", "vs tidemark"],
        rows: TOOLS.map((tool) => [labels[tool], ms(figures[tool].ms), ms(figures[tool].min), ms(figures[tool].max), kib(figures[tool].bytes), tool === "tidemark" ? "1" : ratio(figures[tool].ms, t.ms)]),
        notes: [
          `Ansible takes ${ratio(a.ms, t.ms)} Tidemark's time; goal: at least 10× (${goal(a.ms / t.ms >= 10)}).`,
          `Tidemark takes ${ratio(t.ms, r.ms)} the time of bare rsync + restart; goal: at most 1.5× (${goal(t.ms / r.ms <= 1.5)}). Tidemark's time includes fetching the source repo, planning, the host lock, hash checks, unit state checks and recording in the store.`,
          `On the wire per host: Tidemark ${kib(t.bytes)}, rsync ${kib(r.bytes)} (${ratio(t.bytes, r.bytes)}), Ansible ${kib(a.bytes)} (${ratio(a.bytes, t.bytes)} Tidemark's). Of Tidemark's, ${kib(median(uploaded))} per host is release content (\`uploadedBytes\`: the changed file; the other ${FILES - 1} are hard links to the previous release); the rest is SSH, the scripts and the checks.`,
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
