import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../src/cli/main.js";
import { TestBed } from "../test/bed/bed.js";
import { run } from "../test/bed/proc.js";
import { WorkRepo } from "../test/bed/work-repo.js";

/**
 * A one-file change deployed to 10 systemd hosts, side by side in one run:
 * Tidemark (`tidemark deploy`, from fetch to recorded outcome) vs Ansible
 * (copy of the app dir + systemd restart, forks 10) vs plain rsync over ssh
 * plus a restart, all 10 hosts in parallel. Bytes are counted on the bed's
 * one uplink. `npm run bench:deploy`.
 */
const HOSTS = 10;
const FILES = 20;
const ROUNDS = Number(process.env.TIDEMARK_BENCH_ROUNDS ?? 3);

const bed = await TestBed.up({ systemdHosts: HOSTS, forge: true });
const dir = mkdtempSync(join(tmpdir(), "tidemark-bench-deploy-"));
const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
const info = bed.describe();
const uplink = `tmk${bed.id}`;
const txBytes = () => Number(readFileSync(`/sys/class/net/${uplink}/statistics/tx_bytes`, "utf8")) + Number(readFileSync(`/sys/class/net/${uplink}/statistics/rx_bytes`, "utf8"));
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
  const tidemark = async () => {
    let out = "";
    const code = await main(["node", "tidemark", "deploy", "production", "--yes", "--json", "--settle", "0"], { env, out: (text) => (out += text), err: () => undefined });
    const outcomes = (JSON.parse(out) as { hosts: Array<{ outcome: string }> }).hosts.map((host) => host.outcome);
    if (code !== 0 || outcomes.some((outcome) => outcome !== "deployed")) throw new Error(`tidemark deploy did not deploy everywhere: ${outcomes.join(", ")}`);
  };

  const local = join(dir, "app");
  const writeLocal = (version: number) => {
    for (const [path, content] of Object.entries(files(version))) {
      mkdirSync(join(local, "static"), { recursive: true });
      writeFileSync(join(local, path), content);
    }
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
  const rsync = () =>
    Promise.all(
      bed.hosts.map(async (host) => {
        await run("rsync", ["-a", "--delete", "-e", `ssh ${sshOptions.join(" ")}`, `${local}/`, `root@${host.address}:/srv/rsync/`]);
        await run("ssh", [...sshOptions, `root@${host.address}`, "systemctl restart bench-rsync.service"]);
      }),
    );
  // The rsync unit is installed once, by hand, as a person using rsync would.
  await Promise.all(bed.hosts.map((host) => run("ssh", [...sshOptions, `root@${host.address}`, `mkdir -p /srv/rsync && printf '%s' '${service("bench-rsync", "/srv/rsync")}' > /etc/systemd/system/bench-rsync.service && systemctl daemon-reload && systemctl enable bench-rsync.service`])));

  // Round 0 puts everything in place (and warms caches and connections); it is not measured.
  writeLocal(0);
  await tidemark();
  await ansible();
  await rsync();
  const samples: Record<string, Array<{ ms: number; bytes: number }>> = { tidemark: [], ansible: [], rsync: [] };
  for (let round = 1; round <= ROUNDS; round++) {
    await work.commit(tidemarkTree(round), `v${round}`);
    await work.push("main");
    writeLocal(round);
    // Alternate the order per round so that no tool always runs on a warmer machine.
    const order = round % 2 === 1 ? (["tidemark", "ansible", "rsync"] as const) : (["rsync", "ansible", "tidemark"] as const);
    for (const tool of order) {
      const bytes = txBytes();
      const start = process.hrtime.bigint();
      await { tidemark, ansible, rsync }[tool]();
      samples[tool]!.push({ ms: Number(process.hrtime.bigint() - start) / 1e6, bytes: txBytes() - bytes });
    }
  }

  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const row = (tool: string) => ({ ms: median(samples[tool]!.map((s) => s.ms)), bytes: median(samples[tool]!.map((s) => s.bytes)) / HOSTS });
  const t = row("tidemark");
  const a = row("ansible");
  const r = row("rsync");
  console.log(`\none-file change (${FILES} files, ${Math.round((FILES * 4000) / 1024)} KB app) to ${HOSTS} systemd hosts, median of ${ROUNDS} rounds, side by side:`);
  console.log(`  tidemark deploy  ${t.ms.toFixed(0).padStart(7)} ms   ${(t.bytes / 1024).toFixed(1).padStart(7)} KB per host on the wire`);
  console.log(`  ansible          ${a.ms.toFixed(0).padStart(7)} ms   ${(a.bytes / 1024).toFixed(1).padStart(7)} KB per host`);
  console.log(`  rsync + restart  ${r.ms.toFixed(0).padStart(7)} ms   ${(r.bytes / 1024).toFixed(1).padStart(7)} KB per host`);
  console.log(`  ratios: ansible/tidemark ${(a.ms / t.ms).toFixed(1)}x (goal >= 10x), tidemark/rsync ${(t.ms / r.ms).toFixed(2)}x (goal <= 1.5x)`);
  console.log("  tidemark's time includes fetching the source repo, planning, the host lock, hash checks, unit state checks and recording in the store; settle 0 s");
} finally {
  work.remove();
  rmSync(dir, { recursive: true, force: true });
  await bed.down();
}
