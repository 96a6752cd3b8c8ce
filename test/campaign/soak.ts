import { readdirSync, readFileSync } from "node:fs";
import { TestBed } from "../bed/bed.js";
import { run } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import { HostShell, operatorEnv, reportingServeEnv } from "../helpers/host-shell.js";
import { OperatorProcess } from "../helpers/operator-process.js";
import { median, ms } from "../helpers/report.js";
import { duplicatedApplies, hostState, isHalfSwitched } from "./checks.js";
import { appFiles, seedFleet, splitFleet } from "./fleet.js";
import { grewMost, LiveHeapProbe, type LiveHeap } from "./live-heap.js";
import type { Scenario } from "./scenario.js";

const DEPLOYMENTS = Number(process.env.TIDEMARK_SOAK_DEPLOYMENTS ?? 2000);
const HOSTS = 2;
const SAMPLE_EVERY = 10;
// Each heap snapshot leaves its buffers with the allocator: few of them, so resident memory stays the process's own.
const SNAPSHOT_EVERY = Math.max(SAMPLE_EVERY, Math.floor(DEPLOYMENTS / 10 / SAMPLE_EVERY) * SAMPLE_EVERY);

interface Sample {
  after: number;
  rssBytes: number;
  heapBytes: number;
  heapCommittedBytes: number;
  externalBytes: number;
  fds: number;
  sshConnections: number;
}

/**
 * 2,000 small deployments in a row through one `tidemark serve`: push, wait
 * for the deployment to be recorded, push again. Every 10 deployments its
 * memory, open file descriptors and SSH connections are sampled, and every
 * 200 its live heap is measured by a heap snapshot; the first tenth is
 * warm-up, and the growth compares the next tenth with the last.
 */
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

const soak: Scenario = async (log) => {
  if (!(DEPLOYMENTS >= 100))
    throw new Error(
      `TIDEMARK_SOAK_DEPLOYMENTS is ${process.env.TIDEMARK_SOAK_DEPLOYMENTS}: the soak needs at least 100 deployments, for a warm-up tenth and two windows of heap snapshots`,
    );
  const bed = await TestBed.up({ lightHosts: HOSTS, redis: true, forge: true });
  const shell = new HostShell(bed);
  const operator = operatorEnv(bed);
  const probe = new LiveHeapProbe();
  let work: WorkRepo | undefined;
  const findings: string[] = [];
  try {
    const layout = splitFleet(bed.hosts, 1);
    (await seedFleet(bed, layout, false)).remove();
    const serve = await OperatorProcess.start("serve", {
      ...reportingServeEnv(bed, operator.env),
      TIDEMARK_SETTLE: "0",
      NODE_OPTIONS: probe.nodeOptions,
    });
    await bed.forge!.addHook(bed.forgeRepo, { url: `${serve.url}/webhooks/github`, secret: bed.webhookSecret });
    // One pusher, so no fetch before each push: commit on top of what it pushed last.
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    await work.git("fetch", "--quiet", "origin", "e0");
    await work.git("checkout", "--quiet", "-B", "e0", "FETCH_HEAD");
    const hosts = layout.environments.get("e0")!;
    const ports = new Set(hosts.map((host) => host.port));

    const sample = async (after: number): Promise<Sample> => {
      const status = readFileSync(`/proc/${serve.pid}/status`, "utf8");
      const metrics = await (await fetch(`${serve.url}/metrics`)).text();
      const sockets = (await run("ss", ["-tnH", "state", "established"])).stdout.split("\n").filter((line) => {
        const peer = line.trim().split(/\s+/).at(-1) ?? "";
        return peer.startsWith("127.0.0.1:") && ports.has(Number(peer.split(":")[1]));
      });
      return {
        after,
        rssBytes: Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) * 1024,
        heapBytes: Number(/^tidemark_nodejs_heap_size_used_bytes (\d+)/m.exec(metrics)?.[1] ?? Number.NaN),
        heapCommittedBytes: Number(/^tidemark_nodejs_heap_size_total_bytes (\d+)/m.exec(metrics)?.[1] ?? Number.NaN),
        externalBytes: Number(/^tidemark_nodejs_external_memory_bytes (\d+)/m.exec(metrics)?.[1] ?? Number.NaN),
        fds: readdirSync(`/proc/${serve.pid}/fd`).length,
        sshConnections: sockets.length,
      };
    };

    const samples: Sample[] = [];
    const live: Array<{ after: number; heap: LiveHeap }> = [];
    const durations: number[] = [];
    const began = Date.now();
    let done = 0;
    for (let n = 1; n <= DEPLOYMENTS; n++) {
      const mark = serve.lines.length;
      const started = performance.now();
      const sha = await work.commit(
        Object.assign({}, ...hosts.map((host) => appFiles("e0", host.name, `s${n}`, false))) as Record<string, string>,
        `s${n}`,
      );
      await work.push("e0");
      const result = await serve.waitForLog(
        (line) =>
          (line.commit === sha && typeof line.outcome === "string") || (line.sourceCommit === sha && typeof line.status === "string"),
        60_000,
        mark,
      );
      durations.push(performance.now() - started);
      if (result.outcome !== "succeeded")
        findings.push(
          `deployment ${n} (${sha.slice(0, 7)}) ended ${String(result.outcome ?? result.status)}: ${JSON.stringify(result.hosts ?? result.reason)}`,
        );
      done = n;
      if (n % SAMPLE_EVERY === 0) samples.push(await sample(n));
      if (n % SNAPSHOT_EVERY === 0) {
        live.push({ after: n, heap: await probe.measure(serve.pid) });
        log(
          `${n} deployments, ${ms(Date.now() - began)}; live heap ${mib(live.at(-1)!.heap.bytes)}, rss ${mib(samples.at(-1)!.rssBytes)}, fds ${samples.at(-1)!.fds}`,
        );
      }
      serve.lines.splice(0, serve.lines.length - 50);
    }

    const tenth = Math.max(1, Math.floor(samples.length / 10));
    const early = samples.slice(tenth, 2 * tenth);
    const late = samples.slice(-tenth);
    const liveEarly = live.filter((s) => s.after >= DEPLOYMENTS / 10 && s.after <= DEPLOYMENTS / 5);
    const liveLate = live.filter((s) => s.after >= DEPLOYMENTS * 0.9);
    const liveBytes = (window: typeof live) => median(window.map((s) => s.heap.bytes));
    const beforeSnapshot = samples.find((s) => s.after === SNAPSHOT_EVERY)!;
    const afterSnapshot = samples[samples.indexOf(beforeSnapshot) + 1]!;
    const growth = (pick: (s: Sample) => number) => median(late.map(pick)) / median(early.map(pick)) - 1;
    const pct = (value: number) => `${value >= 0 ? "+" : ""}${(value * 100).toFixed(1)} %`;
    const rssGrowth = growth((s) => s.rssBytes);
    const heapGrowth = liveBytes(liveLate) / liveBytes(liveEarly) - 1;
    const grown = grewMost(liveEarly[0]!.heap, liveLate.at(-1)!.heap, 5);
    log(
      `grew most from deployment ${liveEarly[0]!.after} to ${liveLate.at(-1)!.after}: ${grown.map((g) => `${g.kind} ${(g.bytes / 1024).toFixed(0)} KiB`).join(", ")}`,
    );
    if (heapGrowth >= 0.05)
      findings.push(
        `the live heap grew ${pct(heapGrowth)} from deployments ${liveEarly[0]!.after}–${liveEarly.at(-1)!.after} to ${liveLate[0]!.after}–${liveLate.at(-1)!.after}; most: ${grown
          .slice(0, 3)
          .map((g) => `${g.kind} +${(g.bytes / 1024).toFixed(0)} KiB`)
          .join(", ")}`,
      );
    if (rssGrowth >= 0.05) findings.push(`resident memory grew ${pct(rssGrowth)}`);
    const fdsEarly = median(early.map((s) => s.fds));
    const fdsLate = Math.max(...late.map((s) => s.fds));
    if (fdsLate > fdsEarly + 2) findings.push(`open file descriptors went from ${fdsEarly} to ${fdsLate}`);
    const maxSsh = Math.max(...samples.map((s) => s.sshConnections));
    if (maxSsh > HOSTS) findings.push(`${maxSsh} SSH connections open to ${HOSTS} hosts between deployments`);

    await serve.stop();
    const states = await Promise.all(hosts.map((host) => hostState(shell, host.name, "app")));
    const lost = states.filter((state) => state.version !== `s${DEPLOYMENTS}`).length;
    const halfSwitched = states.filter(isHalfSwitched).length;
    const applies = await duplicatedApplies(operator.env.TIDEMARK_STORE!, ["e0"]);
    findings.push(...applies.examples.slice(0, 5).map((example) => `applied twice: ${example}`));
    return {
      title: `Soak: ${DEPLOYMENTS.toLocaleString("en-US")} small deployments in a row`,
      what: `${DEPLOYMENTS} deployments one after another through one \`tidemark serve\` (webhook, plan, two light hosts, store, statuses): each push waits for the one before to be recorded. Its resident memory, open file descriptors and SSH connections were sampled every ${SAMPLE_EVERY} deployments, and its live heap every ${SNAPSHOT_EVERY} by a heap snapshot (V8 collects all garbage before it writes one; heap used without it swings by a third with garbage not yet collected). Growth compares medians: deployments ${liveEarly[0]!.after}–${liveEarly.at(-1)!.after}, after a tenth of warm-up, with the last tenth. Writing a snapshot leaves its buffers with the allocator (resident memory went from ${mib(beforeSnapshot.rssBytes)} to ${mib(afterSnapshot.rssBytes)} across the first), so resident memory is compared from after the first one.`,
      deployments: done,
      lost,
      duplicated: applies.duplicated,
      halfSwitched,
      finalStatusMs: null,
      figures: [
        [
          "push to recorded, median (p99)",
          `${ms(median(durations))} (${ms([...durations].sort((a, b) => a - b)[Math.floor(durations.length * 0.99)]!)})`,
        ],
        [
          "resident memory, early → late (growth)",
          `${mib(median(early.map((s) => s.rssBytes)))} → ${mib(median(late.map((s) => s.rssBytes)))} (${pct(rssGrowth)})`,
        ],
        [
          "live heap (after a full collection), early → late (growth)",
          `${mib(liveBytes(liveEarly))} → ${mib(liveBytes(liveLate))} (${pct(heapGrowth)})`,
        ],
        [
          "V8 heap used with garbage not yet collected, median, early → late",
          `${mib(median(early.map((s) => s.heapBytes)))} → ${mib(median(late.map((s) => s.heapBytes)))}`,
        ],
        [
          "memory outside the V8 heap (buffers), median, early → late",
          `${mib(median(early.map((s) => s.externalBytes)))} → ${mib(median(late.map((s) => s.externalBytes)))}`,
        ],
        [
          "of resident memory: the V8 heap's pages, median, early → late",
          `${mib(median(early.map((s) => s.heapCommittedBytes)))} → ${mib(median(late.map((s) => s.heapCommittedBytes)))}`,
        ],
        [
          "of resident memory: the rest (buffers, compiled code outside the heap, the allocator's free memory), median, early → late",
          `${mib(median(early.map((s) => s.rssBytes - s.heapCommittedBytes)))} → ${mib(median(late.map((s) => s.rssBytes - s.heapCommittedBytes)))}`,
        ],
        ["open file descriptors, early → most late", `${fdsEarly} → ${fdsLate}`],
        ["SSH connections to the hosts between deployments, most seen", String(maxSsh)],
        ["whole soak", ms(Date.now() - began)],
      ],
      findings,
    };
  } finally {
    await OperatorProcess.stopAll();
    work?.remove();
    probe.remove();
    operator.remove();
    shell.close();
    await bed.down();
  }
};

export default soak;
