import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../src/cli/main.js";
import type { BedHost } from "../test/bed/types.js";
import { TestBed } from "../test/bed/bed.js";
import { run } from "../test/bed/proc.js";
import { WorkRepo } from "../test/bed/work-repo.js";
import { kib, median, ms, ratio } from "../test/helpers/report.js";
import type { Bench } from "./section.js";

/**
 * A one-file change to 100 light hosts (plain sshd on loopback), 50 at a
 * time, side by side in one run: `tidemark deploy` vs rsync over ssh.
 * `npm run bench -- light-hosts`; TIDEMARK_BENCH_ROUNDS sets the rounds.
 */
const HOSTS = 100;
const PARALLEL = 50;
const FILES = 20;
const ROUNDS = Number(process.env.TIDEMARK_BENCH_ROUNDS ?? 3);
const TOOLS = ["tidemark", "rsync"] as const;
type Tool = (typeof TOOLS)[number];

const bench: Bench = async (log) => {
  const bed = await TestBed.up({ lightHosts: HOSTS, forge: true });
  const dir = mkdtempSync(join(tmpdir(), "tidemark-bench-light-"));
  const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
  const ssh = (host: BedHost, line: string) => sshTo(bed, host, line);
  try {
    // The same app for both tools, in its own place on the hosts: Tidemark's release dirs, /srv/rsync (each light host has its own /srv).
    const files = (version: number) => Object.fromEntries(Array.from({ length: FILES }, (_, i) => [`static/file${i}.txt`, `${i === 0 ? version : 0}\n${"x".repeat(4000)}\n`]));
    const inventory = bed.hosts.map((host) => `  ${host.name}: { address: ${host.address}, port: ${host.port}, hostKey: "${host.hostKey}" }`).join("\n");
    const tidemarkTree = (version: number) => Object.fromEntries(bed.hosts.flatMap((host) => Object.entries(files(version)).map(([path, content]) => [`fleet/${host.name}/bench/${path}`, content])));
    await work.commit({ "tidemark.yaml": `environments:\n  production: { track: { branch: main }, tree: fleet }\nhosts:\n${inventory}\nrollout: { maxParallel: ${PARALLEL}, canary: 0, maxFailures: ${HOSTS} }\n`, ...tidemarkTree(0) }, "v0");
    await work.push("main");
    const env = { TIDEMARK_REPO: bed.forge!.cloneUrl(bed.forgeRepo), TIDEMARK_STORE: join(dir, "store.git"), TIDEMARK_MIRRORS: join(dir, "mirrors"), TIDEMARK_SSH_KEY: bed.clientKeyPath };
    const bytes: Record<Tool, number[]> = { tidemark: [], rsync: [] };
    const tidemark = async () => {
      let out = "";
      let err = "";
      const code = await main(["node", "tidemark", "deploy", "production", "--yes", "--json", "--settle", "0"], { env, out: (text) => (out += text), err: (text) => (err += text) });
      if (!out.startsWith("{")) throw new Error(`tidemark deploy failed (exit ${code}): ${err.slice(-2000)}`);
      const hosts = (JSON.parse(out) as { hosts: Array<{ host: string; outcome: string; detail?: string; uploadedBytes?: number }> }).hosts;
      const bad = hosts.filter((host) => host.outcome !== "deployed");
      if (code !== 0 || bad.length > 0) throw new Error(`tidemark deploy did not deploy everywhere (exit ${code}): ${bad.slice(0, 5).map((host) => `${host.host} ${host.outcome} ${host.detail ?? ""}`).join("; ")}`);
      bytes.tidemark.push(median(hosts.map((host) => host.uploadedBytes ?? Number.NaN)));
    };

    const local = join(dir, "app");
    const writeLocal = (version: number) => {
      mkdirSync(join(local, "static"), { recursive: true });
      for (const [path, content] of Object.entries(files(version))) writeFileSync(join(local, path), content);
    };
    const rsync = async () => {
      const sent = await inPool(bed.hosts, PARALLEL, async (host) => {
        const { stdout } = await run("rsync", ["-a", "--delete", "--stats", "-e", `ssh ${sshOptions(bed, host).join(" ")}`, `${local}/`, `root@${host.address}:/srv/rsync/`]);
        const stat = (name: string) => Number(new RegExp(`^${name}: ([\\d,]+)`, "m").exec(stdout)?.[1]?.replaceAll(",", "") ?? Number.NaN);
        return stat("Total bytes sent") + stat("Total bytes received");
      });
      bytes.rsync.push(median(sent));
    };

    log(`round 0: first deployment to ${HOSTS} light hosts with each tool (not measured)`);
    writeLocal(0);
    await tidemark();
    await rsync();
    bytes.tidemark.length = 0;
    bytes.rsync.length = 0;
    const samples: Record<Tool, number[]> = { tidemark: [], rsync: [] };
    for (let round = 1; round <= ROUNDS; round++) {
      await work.commit(tidemarkTree(round), `v${round}`);
      await work.push("main");
      writeLocal(round);
      const order = round % 2 === 1 ? TOOLS : [...TOOLS].reverse();
      for (const tool of order) {
        const start = performance.now();
        await { tidemark, rsync }[tool]();
        samples[tool].push(performance.now() - start);
      }
      // Both tools really changed the file, on the first, a middle and the last host.
      for (const host of [bed.hosts[0]!, bed.hosts[HOSTS / 2]!, bed.hosts[HOSTS - 1]!]) {
        const seen = await ssh(host, "head -n1 /var/lib/tidemark/apps/bench/current/static/file0.txt /srv/rsync/static/file0.txt | grep -v '^=\\|^$' | tr '\\n' ' '");
        if (seen.trim() !== `${round} ${round}`) throw new Error(`${host.name} has ${JSON.stringify(seen)} after round ${round}`);
      }
      log(`round ${round}/${ROUNDS}: ${TOOLS.map((tool) => `${tool} ${ms(samples[tool].at(-1)!)}`).join(", ")}`);
    }

    const t = median(samples.tidemark);
    const r = median(samples.rsync);
    const goal = t / r <= 1.5;
    return [
      {
        title: `One-file change to ${HOSTS} light hosts: Tidemark and rsync`,
        setup: `A one-file change to an app of ${FILES} files (${kib(Object.values(files(0)).reduce((sum, content) => sum + content.length, 0))}, no units) on ${HOSTS} light hosts of the test bed (plain sshd on loopback ports, each with its own /root, /srv and /var/lib/tidemark; no systemd, and an app without units needs none), ${PARALLEL} hosts at a time; the tools take turns in each round, alternating the order. Median of ${ROUNDS} rounds after an unmeasured first one.`,
        header: ["tool", "median", "min", "max", "per host", "sent per host", "vs tidemark"],
        rows: [
          ["`tidemark deploy` (fetch, plan, lock, upload, hash check, switch, record; `maxParallel: 50`, canary 0, settle 0 s)", ms(t), ms(Math.min(...samples.tidemark)), ms(Math.max(...samples.tidemark)), ms(t / HOSTS), `${kib(median(bytes.tidemark))} release content`, "1"],
          [`\`rsync -a --delete\` over ssh, ${PARALLEL} at a time`, ms(r), ms(Math.min(...samples.rsync)), ms(Math.max(...samples.rsync)), ms(r / HOSTS), `${kib(median(bytes.rsync))} rsync protocol`, ratio(r, t)],
        ],
        notes: [
          `Tidemark takes ${ratio(t, r)} the time of bare rsync to the same ${HOSTS} hosts; the goal on systemd hosts is at most 1.5× (${goal ? "met" : "missed"} here).`,
          `Bytes are what each tool counts, not the wire (loopback has no counter of the bed's own): Tidemark's \`uploadedBytes\` (the changed file; the other ${FILES - 1} are hard links to the previous release) and rsync's total bytes sent and received (file list, checksums and the changed file's data). Neither counts SSH's own bytes.`,
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

const sshOptions = (bed: TestBed, host: BedHost) => ["-p", String(host.port), "-i", bed.clientKeyPath, "-o", `UserKnownHostsFile=${bed.describe().knownHosts}`, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"];

/** OpenSSH's client, for the bench's own work on the hosts, apart from what is measured. */
const sshTo = async (bed: TestBed, host: BedHost, line: string) => (await run("ssh", [...sshOptions(bed, host), `root@${host.address}`, line])).stdout;

/** Runs `task` for every item, at most `size` at a time; results in the items' order. */
async function inPool<T, R>(items: readonly T[], size: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await task(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(size, items.length) }, worker));
  return results;
}
