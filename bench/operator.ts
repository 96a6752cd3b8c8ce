import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestBed } from "../test/bed/bed.js";
import { WorkRepo } from "../test/bed/work-repo.js";
import { operatorEnv } from "../test/helpers/host-shell.js";
import { OperatorProcess, type LogLine } from "../test/helpers/operator-process.js";
import { median, ms, ratio } from "../test/helpers/report.js";
import type { Bench } from "./section.js";

/**
 * The operator's two numbers, from `tidemark serve` as it runs in production:
 * 1. time from `git push` to the forge until the first host has switched, for
 *    a one-file change, with where the time goes;
 * 2. webhook deliveries verified and queued per second, driven by autocannon
 *    from a second process (bench/webhook-load.ts), next to a bare node:http
 *    server that verifies nothing and queues nothing (the machine's ceiling)
 *    in the same run.
 * `npm run bench -- operator`; TIDEMARK_BENCH_ROUNDS and TIDEMARK_BENCH_SECONDS set the rounds and the load's length.
 */
const ROUNDS = Number(process.env.TIDEMARK_BENCH_ROUNDS ?? 7);
const SECONDS = Number(process.env.TIDEMARK_BENCH_SECONDS ?? 10);
const CONNECTIONS = 16;
const HOSTS = 2;
const LOAD = new URL("./webhook-load.ts", import.meta.url).pathname;

interface LoadResult {
  requests: { average: number; total: number; sent: number };
  latency: { p50: number; p99: number; max: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}

const bench: Bench = async (log) => {
  const bed = await TestBed.up({ systemdHosts: HOSTS, redis: true, forge: true });
  const dir = mkdtempSync(join(tmpdir(), "tidemark-bench-operator-"));
  const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
  const operator = operatorEnv(bed);
  try {
    const tree = (version: number) =>
      Object.fromEntries(
        bed.hosts.flatMap((host) =>
          Object.entries({
            ...Object.fromEntries(
              Array.from({ length: 20 }, (_, i) => [`static/file${i}.txt`, `${i === 0 ? version : 0}\n${"x".repeat(4000)}\n`]),
            ),
            "systemd/bench.service": "[Service]\nExecStart=/bin/sleep infinity\n",
            "manifest.json": JSON.stringify({ systemd: { units_enabled: ["bench.service"] } }),
          }).map(([path, content]) => [`fleet/${host.name}/bench/${path}`, content]),
        ),
      );
    const inventory = bed.hosts.map((host) => `  ${host.name}: { address: ${host.address}, hostKey: "${host.hostKey}" }`).join("\n");
    await work.commit(
      {
        "tidemark.yaml": `environments:\n  production: { track: { branch: main }, tree: fleet }\nhosts:\n${inventory}\nrollout: { canary: 0 }\n`,
        ...tree(0),
      },
      "v0",
    );
    await work.push("main");
    const serve = await OperatorProcess.start("serve", {
      ...operator.env,
      TIDEMARK_REDIS_URL: bed.redis!.url,
      TIDEMARK_WEBHOOK_SECRET: bed.webhookSecret,
      TIDEMARK_LISTEN: "127.0.0.1:0",
      TIDEMARK_POLL_INTERVAL: "0",
      TIDEMARK_LOG_LEVEL: "debug",
    });
    await bed.forge!.addHook(bed.forgeRepo, { url: `${serve.url}/webhooks/github`, secret: bed.webhookSecret });

    // 1. Push to first switch, round by round; round 0 also warms the store and the hosts, and is not counted.
    const stages: Record<string, number[]> = {
      "webhook queued": [],
      "deployment requested": [],
      "deployment started": [],
      "first host switched": [],
      "all hosts done": [],
    };
    for (let round = 0; round <= ROUNDS; round++) {
      const sha = await work.commit(tree(round + 1), `v${round + 1}`);
      const mark = serve.lines.length;
      const pushed = Date.now();
      await work.push("main");
      const at = async (stage: string, match: (line: LogLine) => boolean) => {
        try {
          return await serve.waitForLog(match, 60_000, mark);
        } catch (error) {
          throw new Error(
            `round ${round}: no log line for "${stage}" of ${sha.slice(0, 7)}; tidemark serve's log since the push:\n${serve.lines
              .slice(mark)
              .map((line) => JSON.stringify(line))
              .join("\n")
              .slice(-20_000)}`,
            { cause: error },
          );
        }
      };
      // The webhook's line names its delivery, not the commit: the request for the commit names both.
      const requested = await at("deployment requested", (line) => line.action === "requested" && line.commit === sha);
      const times = {
        "webhook queued": (await at("webhook queued", (line) => line.result === "queued" && line.delivery === requested.delivery))
          .time as number,
        "deployment requested": requested.time as number,
        "deployment started": (await at("deployment started", (line) => line.msg === "production: deployment started")).time as number,
        "first host switched": (await at("first host switched", (line) => line.phase === "check")).time as number,
        "all hosts done": (await at("all hosts done", (line) => line.commit === sha && line.outcome === "succeeded")).time as number,
      };
      if (round > 0) for (const [stage, time] of Object.entries(times)) stages[stage]!.push(time - pushed);
      log(
        `push round ${round}/${ROUNDS}${round === 0 ? " (warm-up)" : ""}: first host switched ${ms(times["first host switched"] - pushed)} after the push began`,
      );
    }

    // 2. Deliveries per second: the real payload of the last push, signed, each request a new delivery id.
    const last = (await bed.forge!.deliveries()).at(-1)!;
    const body = JSON.stringify(last.payload);
    const payloadFile = join(dir, "push.json");
    writeFileSync(payloadFile, body);
    const signature = `sha256=${createHmac("sha256", bed.webhookSecret).update(body).digest("hex")}`;
    const load = (url: string) =>
      new Promise<LoadResult>((resolve, reject) => {
        const child = spawn(
          process.execPath,
          ["--import", "tsx", LOAD, url, payloadFile, signature, String(SECONDS), String(CONNECTIONS)],
          { stdio: ["ignore", "pipe", "inherit"] },
        );
        let out = "";
        child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
        child.on("close", (code) =>
          code === 0 ? resolve(JSON.parse(out) as LoadResult) : reject(new Error(`the load tool exited ${String(code)}`)),
        );
      });
    const queued = async () =>
      Number(
        /^tidemark_webhook_deliveries_total\{result="queued"\} (\d+)$/m.exec(await (await fetch(`${serve.url}/metrics`)).text())?.[1] ?? 0,
      );
    log(`webhook load: ${SECONDS} s against tidemark serve`);
    const before = await queued();
    const tidemark = await load(`${serve.url}/webhooks/github`);
    const enqueued = (await queued()) - before;
    // The ceiling: a bare server in its own process that reads the body and answers 202.
    log(`webhook load: ${SECONDS} s against a bare node:http server`);
    const bare = spawn(
      process.execPath,
      [
        "-e",
        "require('node:http').createServer((q, s) => { q.resume(); q.on('end', () => s.writeHead(202).end('{}')); }).listen(0, '127.0.0.1', function () { console.log(this.address().port); });",
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let ceiling: LoadResult;
    try {
      const port = await new Promise<string>((resolve) => bare.stdout.once("data", (chunk: Buffer) => resolve(chunk.toString().trim())));
      ceiling = await load(`http://127.0.0.1:${port}/`);
    } finally {
      bare.kill();
    }
    await serve.stop();

    const first = stages["first host switched"]!;
    const loadRow = (name: string, r: LoadResult) => [
      name,
      `${Math.round(r.requests.average)}/s`,
      `${r.latency.p50} ms`,
      `${r.latency.p99} ms`,
      `${r.latency.max} ms`,
      String(r.non2xx + r.errors + r.timeouts),
    ];
    const throughput = tidemark.requests.average;
    const p99 = tidemark.latency.p99;
    const refused = tidemark.non2xx + tidemark.errors + tidemark.timeouts;
    return [
      {
        title: "Push to first switch",
        setup: `\`tidemark serve\` as it runs in production (webhooks, Redis, a worker in the process) on the test bed's forge, Redis and ${HOSTS} systemd hosts; a one-file change of a 20-file app pushed with \`git push\`; each stage as the operator's log stamps it, from the moment the push began. Median of ${ROUNDS} pushes after an unmeasured first one.`,
        header: ["after `git push` began", "median", "min", "max"],
        rows: Object.entries(stages).map(([stage, values]) => [
          stage,
          ms(median(values)),
          ms(Math.min(...values)),
          ms(Math.max(...values)),
        ]),
        notes: [
          `Push to first host switched: median ${ms(median(first))}; goal: under 1 s (${median(first) < 1000 ? "met" : "missed"}). The forge's post-receive hook and its delivery take the first ${ms(median(stages["webhook queued"]!))}.`,
          `"All hosts done" includes the 1 s settle before the unit checks (serve's default).`,
        ],
      },
      {
        title: "Webhook ingest",
        setup: `Webhook deliveries (the real push payload of the forge, signed, a new delivery id per request) driven by autocannon from a second process, ${SECONDS} s, ${CONNECTIONS} connections, against \`tidemark serve\` (signature check, parse, queue in Redis) and, in the same run, a bare node:http server that reads the body and answers 202 (the machine's ceiling). The load tool, Redis, the forge and the server share the machine's cores.`,
        header: ["server", "deliveries", "p50", "p99", "max", "refused or failed"],
        rows: [loadRow("`tidemark serve` (verify + queue)", tidemark), loadRow("bare node:http (no work)", ceiling)],
        notes: [
          `Tidemark serves ${ratio(tidemark.requests.average, ceiling.requests.average)} the bare server's throughput.`,
          `${enqueued} deliveries verified and queued (by serve's own metric) of ${tidemark.requests.sent} sent.`,
          `Goal: at least 2,000 deliveries/s with p99 under 20 ms, none refused: ${throughput >= 2000 && p99 < 20 && refused === 0 ? "met" : "missed"} (${Math.round(throughput)}/s, p99 ${p99} ms, ${refused} refused or failed).`,
        ],
      },
    ];
  } finally {
    await OperatorProcess.stopAll();
    work.remove();
    operator.remove();
    rmSync(dir, { recursive: true, force: true });
    await bed.down();
  }
};
export default bench;
