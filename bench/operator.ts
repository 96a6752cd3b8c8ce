import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestBed } from "../test/bed/bed.js";
import { WorkRepo } from "../test/bed/work-repo.js";
import { operatorEnv } from "../test/helpers/host-shell.js";
import { OperatorProcess, type LogLine } from "../test/helpers/operator-process.js";

/**
 * The operator's two numbers, from `tidemark serve` as it runs in production:
 * 1. webhook deliveries verified and queued per second, driven by autocannon
 *    from a second process, next to a bare node:http server that verifies
 *    nothing and queues nothing (the machine's ceiling) in the same run;
 * 2. time from `git push` to the forge until the first host has switched, for
 *    a one-file change, with where the time goes.
 * `npm run bench:operator`.
 */
const ROUNDS = Number(process.env.TIDEMARK_BENCH_ROUNDS ?? 7);
const SECONDS = Number(process.env.TIDEMARK_BENCH_SECONDS ?? 10);
const CONNECTIONS = 16;
const LOAD = new URL("./webhook-load.ts", import.meta.url).pathname;

const bed = await TestBed.up({ systemdHosts: 2, redis: true, forge: true });
const dir = mkdtempSync(join(tmpdir(), "tidemark-bench-operator-"));
const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
const operator = operatorEnv(bed);
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

try {
  const tree = (version: number) =>
    Object.fromEntries(
      bed.hosts.flatMap((host) =>
        Object.entries({
          ...Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`static/file${i}.txt`, `${i === 0 ? version : 0}\n${"x".repeat(4000)}\n`])),
          "systemd/bench.service": "[Service]\nExecStart=/bin/sleep infinity\n",
          "manifest.json": JSON.stringify({ systemd: { units_enabled: ["bench.service"] } }),
        }).map(([path, content]) => [`fleet/${host.name}/bench/${path}`, content]),
      ),
    );
  const inventory = bed.hosts.map((host) => `  ${host.name}: { address: ${host.address}, hostKey: "${host.hostKey}" }`).join("\n");
  await work.commit({ "tidemark.yaml": `environments:\n  production: { track: { branch: main }, tree: fleet }\nhosts:\n${inventory}\nrollout: { canary: 0 }\n`, ...tree(0) }, "v0");
  await work.push("main");
  const serve = await OperatorProcess.start("serve", { ...operator.env, TIDEMARK_REDIS_URL: bed.redis!.url, TIDEMARK_WEBHOOK_SECRET: bed.webhookSecret, TIDEMARK_LISTEN: "127.0.0.1:0", TIDEMARK_POLL_INTERVAL: "0", TIDEMARK_LOG_LEVEL: "debug" });
  await bed.forge!.addHook(bed.forgeRepo, { url: `${serve.url}/webhooks/github`, secret: bed.webhookSecret });

  // 1. Push to first switch, round by round; the first round also warms the store and the hosts.
  const stages: Record<string, number[]> = { "webhook queued": [], "deployment requested": [], "deployment started": [], "first host switched": [], "all hosts done": [] };
  for (let round = 0; round <= ROUNDS; round++) {
    const sha = await work.commit(tree(round + 1), `v${round + 1}`);
    const mark = serve.lines.length;
    const pushed = Date.now();
    await work.push("main");
    const at = async (match: (line: LogLine) => boolean) => (await serve.waitForLog(match, 60_000, mark)).time as number;
    const times = {
      "webhook queued": await at((line) => line.result === "queued" && line.after === sha),
      "deployment requested": await at((line) => line.action === "requested" && line.commit === sha),
      "deployment started": await at((line) => line.msg === "production: deployment started"),
      "first host switched": await at((line) => line.phase === "check"),
      "all hosts done": await at((line) => line.commit === sha && line.outcome === "succeeded"),
    };
    if (round > 0) for (const [stage, time] of Object.entries(times)) stages[stage]!.push(time - pushed);
  }

  // 2. Deliveries per second: the real payload of the last push, signed, each request a new delivery id.
  const last = (await bed.forge!.deliveries()).at(-1)!;
  const body = JSON.stringify(last.payload);
  const payloadFile = join(dir, "push.json");
  writeFileSync(payloadFile, body);
  const signature = `sha256=${createHmac("sha256", bed.webhookSecret).update(body).digest("hex")}`;
  const load = (url: string) =>
    new Promise<{ requests: { average: number; total: number; sent: number }; latency: { p50: number; p99: number; max: number }; non2xx: number; errors: number; timeouts: number }>((resolve, reject) => {
      const child = spawn(process.execPath, ["--import", "tsx", LOAD, url, payloadFile, signature, String(SECONDS), String(CONNECTIONS)], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
      child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out) as never) : reject(new Error(`the load tool exited ${String(code)}`))));
    });
  const queued = async () => Number(/^tidemark_webhook_deliveries_total\{result="queued"\} (\d+)$/m.exec(await (await fetch(`${serve.url}/metrics`)).text())?.[1] ?? 0);
  const before = await queued();
  const tidemark = await load(`${serve.url}/webhooks/github`);
  const enqueued = (await queued()) - before;
  // The ceiling: a bare server in its own process that reads the body and answers 202.
  const bare = spawn(process.execPath, ["-e", "require('node:http').createServer((q, s) => { q.resume(); q.on('end', () => s.writeHead(202).end('{}')); }).listen(0, '127.0.0.1', function () { console.log(this.address().port); });"], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<string>((resolve) => bare.stdout.once("data", (chunk: Buffer) => resolve(chunk.toString().trim())));
  const ceiling = await load(`http://127.0.0.1:${port}/`);
  bare.kill();
  await serve.stop();

  console.log(`\npush to the forge -> first host switched, one-file change (20-file app, 2 systemd hosts), median of ${ROUNDS}:`);
  for (const [stage, values] of Object.entries(stages)) console.log(`  ${stage.padEnd(22)} ${String(median(values)).padStart(6)} ms after git push began   (min ${Math.min(...values)}, max ${Math.max(...values)})`);
  console.log(`  goal: first host switched under 1000 ms`);
  console.log(`\nwebhook deliveries, ${SECONDS} s, ${CONNECTIONS} connections, autocannon in a second process, side by side:`);
  const line = (name: string, r: typeof tidemark) => console.log(`  ${name.padEnd(30)} ${String(Math.round(r.requests.average)).padStart(6)} req/s   p50 ${r.latency.p50} ms   p99 ${r.latency.p99} ms   max ${r.latency.max} ms   non-2xx ${r.non2xx}   errors ${r.errors + r.timeouts}`);
  line("tidemark serve (verify+queue)", tidemark);
  line("bare node:http (no work)", ceiling);
  console.log(`  verified and queued: ${enqueued} deliveries (autocannon sent ${tidemark.requests.sent}); tidemark/bare throughput ${(tidemark.requests.average / ceiling.requests.average).toFixed(2)}x`);
  console.log(`  goal: >= 2000 deliveries/s with p99 under 20 ms`);
} finally {
  await OperatorProcess.stopAll();
  work.remove();
  operator.remove();
  rmSync(dir, { recursive: true, force: true });
  await bed.down();
}
