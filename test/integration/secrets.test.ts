import { execFileSync } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { readdirSync, readFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inflateSync } from "node:zlib";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import { run, waitFor } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import { HostShell, operatorEnv } from "../helpers/host-shell.js";
import { OperatorProcess, type LogLine } from "../helpers/operator-process.js";
import { tidemark } from "../helpers/run-cli.js";

import { integrationLifecycle } from "../helpers/lifecycle.js";

/** The part of `plan --json` these tests read. */
type PlanJson = { hosts: Array<{ apps: Array<{ files: unknown[] }> }> };

const REPO = "acme/vault";

const app = (version: string, { run = "exec sleep infinity", checks = [] as unknown[] } = {}) => ({
  "clusters/staging/web01/app/systemd/app.service": [
    "[Unit]",
    "Description=app",
    "",
    "[Service]",
    "EnvironmentFile=/var/lib/tidemark/apps/app/current/db.env",
    "ExecStart=/bin/sh /var/lib/tidemark/apps/app/current/run.sh",
    "",
  ].join("\n"),
  "clusters/staging/web01/app/manifest.json": JSON.stringify({
    systemd: { units_enabled: ["app.service"] },
    checks,
    // A host path that held a file before: what the link displaces is kept on the host, and searched too.
    symlinks: { "/etc/app/db.env": "db.env" },
  }),
  "clusters/staging/web01/app/run.sh": `${run}\n`,
  "clusters/staging/web01/app/version": `${version}\n`,
});

/** The SOPS file the real sops wrote, with its throwaway key (test/fixtures/sops/README.md): its one value is "this is a secret". */
const SOPS = (name: string) => readFileSync(new URL(`../fixtures/sops/${name}`, import.meta.url));

/** A GitHub token in GitHub's format that the stand-in has never issued: every report is answered 401. */
function foreignToken(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  return `ghp_${Array.from({ length: 36 }, () => alphabet[randomInt(alphabet.length)]).join("")}`;
}

interface Tapped {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  status: number;
  response: string;
}

/**
 * A pass-through in front of the forge's REST API that keeps every request
 * as sent: the forge records no body for a request it refuses with 401, and
 * those are the ones this test is about.
 */
async function startTap(target: string): Promise<{ url: string; seen: Tapped[]; close: () => Promise<void> }> {
  const seen: Tapped[] = [];
  const hopByHop = new Set(["host", "connection", "content-length", "transfer-encoding", "keep-alive", "content-encoding"]);
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      void (async () => {
        const body = Buffer.concat(chunks);
        const headers = Object.fromEntries(
          Object.entries(request.headers)
            .filter(([name]) => !hopByHop.has(name))
            .map(([name, value]) => [name, String(value)]),
        );
        const answer = await fetch(`${target}${request.url ?? "/"}`, {
          method: request.method,
          headers,
          body: body.length > 0 ? body : undefined,
        });
        const text = await answer.text();
        // The Authorization header carries the token on purpose: it is where the token belongs, not a leak.
        const { authorization: _sent, ...kept } = headers;
        seen.push({
          method: request.method ?? "GET",
          url: request.url ?? "/",
          headers: kept,
          body: body.toString(),
          status: answer.status,
          response: text,
        });
        response.writeHead(answer.status, Object.fromEntries([...answer.headers].filter(([name]) => !hopByHop.has(name))));
        response.end(text);
      })().catch((error: unknown) => {
        response.writeHead(502, { "content-type": "text/plain" });
        response.end(String(error));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Every key of a Redis and what it holds, read by type, as text: one entry per key. */
async function dumpRedis(redis: Redis): Promise<Record<string, string>> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await redis.scan(cursor, "COUNT", 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== "0");
  const dump: Record<string, string> = {};
  for (const key of keys.sort()) {
    const type = await redis.type(key);
    let content: unknown;
    if (type === "string") content = await redis.get(key);
    else if (type === "hash") content = await redis.hgetall(key);
    else if (type === "list") content = await redis.lrange(key, 0, -1);
    else if (type === "set") content = await redis.smembers(key);
    else if (type === "zset") content = await redis.zrange(key, "0", "-1", "WITHSCORES");
    else if (type === "stream") content = await redis.xrange(key, "-", "+");
    else if (type === "none")
      continue; // expired between SCAN and TYPE
    else throw new Error(`Redis key ${key} has a type this test cannot read: ${type}`);
    dump[`${type} ${key}`] = JSON.stringify(content);
  }
  return dump;
}

/** Each secret's occurrences in each place, with some text around it: [] when nothing leaked. */
function leaks(places: Record<string, string>, secrets: Record<string, string>): string[] {
  const found: string[] = [];
  for (const [place, text] of Object.entries(places)) {
    for (const [name, secret] of Object.entries(secrets)) {
      for (let at = text.indexOf(secret); at >= 0; at = text.indexOf(secret, at + 1)) {
        found.push(`${name} in ${place}: …${text.slice(Math.max(0, at - 120), at + secret.length + 60)}…`);
      }
    }
  }
  return found;
}

/**
 * A run that fails every way it can, with every secret Tidemark is given,
 * then a search of everything it wrote: its log, every key in Redis, every
 * request it sent to GitHub, its store and mirror, and a failing CLI's output.
 */
describe("Secrets never leak", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let operator: ReturnType<typeof operatorEnv>;
  let serve: OperatorProcess;
  let tap: Awaited<ReturnType<typeof startTap>>;
  let redis: Redis;
  let cliDir: string;
  let secrets: Record<string, string>;
  let repoUrl: string;
  /** The source repo's URL as it may be shown: no credentials in it. */
  let plainRepoUrl: string;
  /** An HTTP check with basic-auth credentials, on a port nothing listens on. */
  let healthUrl: string;
  let env: NodeJS.ProcessEnv;
  const cli: Record<string, { code: number; stdout: string; stderr: string }> = {};
  let shell: HostShell;
  /** The settings' secrets a failing unit printed, and the deployment that kept its output. */
  let printed: Record<string, string>;
  let printedBy: string;
  let encryptAge: (plain: string) => Buffer;
  let ageKeyFile: string;

  const owned = integrationLifecycle({ forge: () => bed?.forge, log: () => serve });

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ systemdHosts: 1, redis: true, forge: true }), (it) => it.down());
    const forge = bed.forge!;
    // A private repository: fetching it takes the credentials in the URL, so they are used, not only carried.
    await forge.createRepo("acme", "vault", { private: true });
    repoUrl = forge.pushUrl(REPO);
    plainRepoUrl = forge.cloneUrl(REPO);
    // The bed's Redis has no password option; redis-server takes one at run time.
    const redisPassword = `rp-${randomBytes(16).toString("hex")}`;
    const open = new Redis(bed.redis!.url);
    await open.config("SET", "requirepass", redisPassword);
    open.disconnect();
    const redisUrl = `redis://:${redisPassword}@127.0.0.1:${bed.redis!.port}`;
    redis = owned.own(new Redis(redisUrl, { maxRetriesPerRequest: null }), (it) => it.disconnect());

    const key = readFileSync(bed.clientKeyPath, "utf8");
    const body = key.split("\n").filter((line) => line !== "" && !line.startsWith("-----"));
    // The first line is the OpenSSH format's header, the same in every key; the others are this key's own.
    const keyLines = body.slice(1).filter((line) => line.length >= 40);
    expect(keyLines.length).toBeGreaterThanOrEqual(3);
    secrets = {
      "the GitHub token": foreignToken(),
      "the repo URL's password": new URL(repoUrl).password,
      "the webhook secret": bed.webhookSecret,
      "the Redis password": redisPassword,
      ...Object.fromEntries(keyLines.map((line, i) => [`line ${i + 2} of the SSH private key`, line])),
      // Not a setting: a credential in a URL of the config tree, which only the redactor's URL pattern catches.
      "the health check URL's password": `hc-${randomBytes(12).toString("hex")}`,
    };
    healthUrl = `http://probe:${secrets["the health check URL's password"]}@127.0.0.1:9/health`;
    for (const [name, secret] of Object.entries(secrets)) expect(secret.length, name).toBeGreaterThanOrEqual(20);

    work = owned.own(await WorkRepo.create(repoUrl), (it) => it.remove());
    operator = owned.own(operatorEnv(bed), (it) => it.remove());
    shell = owned.own(new HostShell(bed), (it) => it.close());
    cliDir = owned.own(mkdtempSync(join(tmpdir(), "tidemark-cli-")), (dir) => rmSync(dir, { recursive: true, force: true }));
    tap = owned.own(await startTap(forge.url), (it) => it.close());
    // The config tree's own secrets: an age file made with Debian's age, and a SOPS file the real sops wrote.
    const keys = owned.own(mkdtempSync(join(tmpdir(), "tidemark-keys-")), (dir) => rmSync(dir, { recursive: true, force: true }));
    execFileSync("age-keygen", ["-o", join(keys, "operator.txt")], { stdio: "ignore" });
    writeFileSync(join(keys, "sops.txt"), SOPS("key.txt"));
    const recipient = execFileSync("age-keygen", ["-y", join(keys, "operator.txt")], { encoding: "utf8" }).trim();
    encryptAge = (plain) => {
      writeFileSync(join(keys, "plain"), plain);
      return execFileSync("age", ["-a", "-r", recipient, join(keys, "plain")]);
    };
    ageKeyFile = `${join(keys, "operator.txt")},${join(keys, "sops.txt")}`;
    secrets["the age file's password"] = `db-${randomBytes(16).toString("hex")}`;
    secrets["the pull request's new password"] = `db-${randomBytes(16).toString("hex")}`;
    // Public test data, so a known value: still one no output may hold.
    secrets["the SOPS file's value"] = "this is a secret";
    await shell.run("web01", "mkdir -p /etc/app && echo 'what was there before Tidemark' > /etc/app/db.env");
    const host = bed.host("web01");
    await work.commit(
      {
        "tidemark.yaml": [
          "environments:",
          "  staging: { track: { branch: main }, tree: clusters/staging }",
          "hosts:",
          `  web01: { address: ${host.address}, port: ${host.port}, hostKey: "${host.hostKey}" }`,
          "",
        ].join("\n"),
        ...app("v0"),
        "clusters/staging/web01/app/db.env.age": encryptAge(`DB_PASSWORD=${secrets["the age file's password"]}\n`),
        "clusters/staging/web01/app/secret.enc.yaml": SOPS("secret.enc.yaml"),
      },
      "zero",
    );
    await work.push("main");
    env = {
      ...operator.env,
      TIDEMARK_REPO: repoUrl,
      TIDEMARK_REDIS_URL: redisUrl,
      TIDEMARK_WEBHOOK_SECRET: bed.webhookSecret,
      TIDEMARK_LISTEN: "127.0.0.1:0",
      TIDEMARK_POLL_INTERVAL: "0",
      TIDEMARK_SETTLE: "0.3",
      TIDEMARK_GITHUB_TOKEN: secrets["the GitHub token"],
      TIDEMARK_GITHUB_API_URL: `${tap.url}/api/v3`,
      TIDEMARK_GITHUB_WRITE_INTERVAL: "0.02",
      TIDEMARK_PUBLIC_URL: "http://127.0.0.1:8080/tidemark",
      TIDEMARK_AGE_KEY_FILE: ageKeyFile,
      // Every line the operator can log.
      TIDEMARK_LOG_LEVEL: "trace",
    };
    serve = await OperatorProcess.start("serve", env);
    await forge.addHook(REPO, { url: `${serve.url}/webhooks/github`, secret: bed.webhookSecret, events: ["push", "pull_request"] });
  });

  const finished = (sha: string) => (line: LogLine) =>
    line.environment === "staging" && line.commit === sha && typeof line.outcome === "string";

  it(
    "a run that fails on purpose: refused reports, a rollback, an invalid tree, the source repo down, failing CLI commands",
    { timeout: 300_000 },
    async () => {
      const forge = bed.forge!;
      // A good deployment first: the private repo was fetched with the URL's credentials.
      const good = await work.commit(app("v1"), "v1");
      await work.push("main");
      expect((await serve.waitForLog(finished(good), 90_000)).outcome).toBe("succeeded");

      // A unit that exits 3: the host rolls back.
      const broken = await work.commit(app("v2", { run: "exit 3" }), "v2: the unit exits 3");
      await work.push("main");
      const failed = await serve.waitForLog(finished(broken), 90_000);
      expect(failed.outcome).toBe("failed");
      expect(failed.hosts).toEqual([expect.objectContaining({ host: "web01", outcome: "rolled-back" })]);

      // A health check behind basic auth that fails: its URL, credentials and all, is in the failure's text.
      const checked = await work.commit(app("v2b", { checks: [{ http: healthUrl, timeoutSeconds: 5 }] }), "v2b: a health check that fails");
      await work.push("main");
      const unhealthy = await serve.waitForLog(finished(checked), 90_000);
      expect(unhealthy.outcome).toBe("failed");
      expect(unhealthy.hosts).toEqual([
        expect.objectContaining({
          host: "web01",
          outcome: "rolled-back",
          detail: expect.stringMatching(/^check "http:\/\/[^"]*127\.0\.0\.1:9\/health" of app failed: /) as unknown,
        }),
      ]);

      // A unit that prints the operator's configured secrets (found on its host, not in the source repo) and fails: its last lines are kept, for the store, the page and the statuses.
      printed = {
        "the GitHub token": secrets["the GitHub token"]!,
        "the webhook secret": secrets["the webhook secret"]!,
        "the Redis password": secrets["the Redis password"]!,
        "the repo URL's password": secrets["the repo URL's password"]!,
        "the age file's password": secrets["the age file's password"]!,
        "the SOPS file's value": secrets["the SOPS file's value"]!,
      };
      const leak = Object.entries(printed)
        .map(([name, secret]) => `${name}: ${secret}`)
        .join("\n");
      await shell.run("web01", `echo ${Buffer.from(`${leak}\n`).toString("base64")} | base64 -d > /root/leak`);
      const printing = await work.commit(
        app("v2c", {
          run: 'cat /root/leak; echo "DB_PASSWORD is $DB_PASSWORD"; cat /var/lib/tidemark/apps/app/current/secret.enc.yaml; echo "app: giving up"; exit 1',
        }),
        "v2c: the unit prints secrets and exits 1",
      );
      await work.push("main");
      const printer = await serve.waitForLog(finished(printing), 90_000);
      expect(printer.outcome).toBe("failed");
      expect(printer.hosts).toEqual([expect.objectContaining({ host: "web01", outcome: "rolled-back" })]);
      printedBy = String(printer.deployment);

      // A SOPS value changed after sops wrote it: the deployment stops before any host, its status naming the file, nothing of it.
      let since = serve.lines.length;
      const tamperedSops = SOPS("secret.enc.yaml").toString().replace("data:hxKQomzJ", "data:hxKQomzK");
      expect(tamperedSops).not.toBe(SOPS("secret.enc.yaml").toString());
      await work.commit({ "clusters/staging/web01/app/secret.enc.yaml": tamperedSops }, "a tampered SOPS value");
      await work.push("main");
      const tampered = await serve.waitForLog((line) => line.msg === "deploy.staging job failed", 60_000, since);
      expect(tampered.error).toContain("cannot decrypt clusters/staging/web01/app/secret.enc.yaml: secret: a value does not decrypt");

      // An invalid config tree (the SOPS file as sops wrote it again).
      since = serve.lines.length;
      await work.commit(
        {
          "clusters/staging/web01/app/manifest.json": JSON.stringify({ systemd: { units_enabled: "app.service" } }),
          "clusters/staging/web01/app/secret.enc.yaml": SOPS("secret.enc.yaml"),
        },
        "broken manifest",
      );
      await work.push("main");
      const invalid = await serve.waitForLog((line) => line.msg === "deploy.staging job failed", 60_000, since);
      expect(invalid.error).toMatch(/manifest\.json/);

      // The source repo unreachable while a pull request is planned, and while a person runs the CLI.
      await work.git("checkout", "--quiet", "-b", "leak");
      await work.commit(
        {
          ...app("v3"),
          "clusters/staging/web01/app/db.env.age": encryptAge(`DB_PASSWORD=${secrets["the pull request's new password"]}\n`),
        },
        "v3, fixed, and a new password",
      );
      await work.push("leak");
      since = serve.lines.length;
      await forge.setGitAvailable(false);
      try {
        const pull = await forge.openPullRequest(REPO, { head: "leak" });
        const down = await serve.waitForLog((line) => line.msg === "refs job failed", 60_000, since);
        expect(down.error).toContain(`could not fetch ${plainRepoUrl}`);
        const cliEnv = { ...env, TIDEMARK_STORE: join(cliDir, "store.git"), TIDEMARK_MIRRORS: join(cliDir, "mirrors") };
        cli.plan = await tidemark(["plan", "staging"], cliEnv);
        expect(cli.plan.code).toBe(4);
        expect(cli.plan.stderr).toContain(`could not fetch ${plainRepoUrl}`);
        await forge.setGitAvailable(true);
        await serve.waitForLog((line) => line.msg === "staging: previewed" && line.pullRequest === pull.number, 60_000, since);
        // What a person sees of the pull request's plan (from a store of its own, so every file is new): a secret, and nothing of it.
        cli["plan --json"] = await tidemark(["plan", "staging", "--ref", "leak", "--json"], cliEnv);
        expect(cli["plan --json"].code, cli["plan --json"].stderr).toBe(0);
        expect((JSON.parse(cli["plan --json"].stdout) as PlanJson).hosts[0]!.apps[0]!.files).toContainEqual({
          path: "db.env",
          change: "added",
          secret: true,
        });
        cli.deploy = await tidemark(["deploy", "staging", "--plan-only", "--repo", repoUrl], cliEnv);
        expect(cli.deploy.code).toBe(2);
        expect(cli.deploy.stderr).toMatch(/clusters\/staging\/web01\/app\/manifest\.json: systemd\.units_enabled/);
        // Settings refused before anything starts, with every secret in the environment.
        cli.serve = await tidemark(["serve"], {
          ...cliEnv,
          TIDEMARK_LISTEN: "every interface",
          TIDEMARK_REDIS_URL: `http://:${secrets["the Redis password"]}@127.0.0.1:${bed.redis!.port}`,
        });
        expect(cli.serve.code).toBe(1);
        expect(cli.serve.stderr).toMatch(/invalid settings[\s\S]*\n {2}listen: [\s\S]*\n {2}redis: /);
      } finally {
        await forge.setGitAvailable(true);
      }

      // Every report refused: GitHub answered 401, BullMQ keeps the jobs to try again, with the reason.
      await waitFor(
        "the refused reports of the invalid tree and of the rollback",
        () => {
          const statuses = tap.seen
            .filter((request) => request.method === "POST" && request.url.includes("/statuses/"))
            .map((request) => JSON.parse(request.body) as { state: string; description: string });
          return (
            statuses.some(
              (status) =>
                status.state === "error" &&
                status.description.startsWith(
                  "cannot decrypt clusters/staging/web01/app/secret.enc.yaml: secret: a value does not decrypt",
                ),
            ) &&
            statuses.some((status) => status.description.startsWith("invalid config: clusters/staging/web01/app/manifest.json")) &&
            statuses.some((status) => status.description.includes("rolled back to"))
          );
        },
        { timeoutMs: 60_000, intervalMs: 200 },
      );
      expect(tap.seen.length).toBeGreaterThan(0);
      expect(tap.seen.every((request) => request.status === 401)).toBe(true);
      await serve.waitForLog((line) => line.msg === "report job failed" && String(line.error).includes("Bad credentials"));
    },
  );

  it("not in serve's log, which has the failures", () => {
    const log = serve.output;
    // The failures are in it, the repo's URL among them, without its credentials.
    expect(
      serve.logs((line) => line.msg === "report job failed" && String(line.error).startsWith("Bad credentials")).length,
    ).toBeGreaterThan(0);
    expect(serve.logs((line) => /^POST \/repos\/acme\/vault\/statuses\/[0-9a-f]{40} - 401 /.test(line.msg)).length).toBeGreaterThan(0);
    // The Redis URL is logged, its password masked.
    expect(serve.logs((line) => line.msg === "tidemark serve started")[0]!.redis).toMatch(
      new RegExp(`^redis://\\S+@127\\.0\\.0\\.1:${bed.redis!.port}$`),
    );
    expect(
      serve.logs((line) => line.msg === "refs job failed" && String(line.error).includes(`could not fetch ${plainRepoUrl}`)).length,
    ).toBeGreaterThan(0);
    // The unit that exits 3, the failing health check, the unit that prints secrets.
    expect(serve.logs((line) => line.msg === "staging: deployment failed").length).toBe(3);
    expect(
      serve.logs((line) => line.msg === "staging: deployment failed" && JSON.stringify(line.hosts).includes("127.0.0.1:9/health")).length,
    ).toBe(1);
    expect(log).toContain(plainRepoUrl.replace(/\.git$/, ""));
    const places = Object.fromEntries(log.split("\n").map((line, i) => [`serve's output, line ${i + 1}`, line]));
    expect(leaks(places, secrets)).toEqual([]);
  });

  it("not in Redis, which holds the failed jobs and their reasons", async () => {
    const dump = await dumpRedis(redis);
    const all = Object.values(dump).join("\n");
    const reports = new Queue("report", { connection: redis, prefix: "tidemark" });
    try {
      const refused = (await reports.getJobs(["delayed", "failed", "wait", "active"])).filter((job) =>
        job.failedReason?.startsWith("Bad credentials"),
      );
      expect(refused.length).toBeGreaterThan(0);
    } finally {
      await reports.close();
    }
    expect(all).toContain(`could not fetch ${plainRepoUrl}`);
    expect(all).toMatch(/invalid config: clusters\/staging\/web01\/app\/manifest\.json/);
    expect(all).toContain("rolled-back");
    expect(Object.keys(dump).length).toBeGreaterThan(20);
    expect(leaks(dump, secrets)).toEqual([]);
  });

  it("not in what was sent to GitHub, every status refused with 401", async () => {
    const statuses = tap.seen.filter((request) => request.method === "POST" && request.url.includes("/statuses/"));
    expect(statuses.length).toBeGreaterThanOrEqual(5);
    expect(statuses.map((request) => (JSON.parse(request.body) as { context: string }).context)).toContain("tidemark/plan/staging");
    const recorded = await bed.forge!.apiRequests();
    expect(recorded.length).toBeGreaterThanOrEqual(statuses.length);
    expect(recorded.every((request) => request.status === 401 && request.auth === "none")).toBe(true);
    const places = {
      ...Object.fromEntries(
        tap.seen.map((request, i) => [`request ${i + 1} to GitHub (${request.method} ${request.url})`, JSON.stringify(request)]),
      ),
      "the forge's record of the API requests": JSON.stringify(recorded),
    };
    expect(leaks(places, secrets)).toEqual([]);
  });

  it("not in the output of failing CLI commands, which name the repo", () => {
    expect(Object.keys(cli)).toEqual(["plan", "plan --json", "deploy", "serve"]);
    expect(cli.plan!.stderr).toContain(plainRepoUrl);
    const places = Object.fromEntries(
      Object.entries(cli).flatMap(([command, { stdout, stderr }]) => [
        [`tidemark ${command}: stdout`, stdout],
        [`tidemark ${command}: stderr`, stderr],
      ]),
    );
    expect(leaks(places, secrets)).toEqual([]);
  });

  it("not in the store's records (nor in what tidemark history shows of them), nor in the mirrors' git config", async () => {
    const store = operator.env.TIDEMARK_STORE!;
    const records = (await run("git", ["--git-dir", store, "log", "--all", "--format=%H%n%B"])).stdout;
    expect(records).toContain(`Tidemark-Source-Repo: ${plainRepoUrl}`);
    // What a person sees of them.
    const history = await tidemark(["history", "staging", "--json"], env);
    expect(history.code).toBe(0);
    expect(history.stdout).toMatch(/rolled-back/);
    const places: Record<string, string> = {
      "the store's records": records,
      "the store's config": readFileSync(join(store, "config"), "utf8"),
      "tidemark history staging: stdout": history.stdout,
      "tidemark history staging: stderr": history.stderr,
    };
    for (const mirrors of [operator.env.TIDEMARK_MIRRORS!, join(cliDir, "mirrors")]) {
      for (const mirror of readdirSync(mirrors).filter((name) => name.endsWith(".git")))
        places[join(mirrors, mirror, "config")] = readFileSync(join(mirrors, mirror, "config"), "utf8");
    }
    expect(Object.keys(places).length).toBe(6);
    expect(leaks(places, secrets)).toEqual([]);
  });

  it("not in what a failing unit printed as the store keeps it (every object, loose and packed), nor on the operator's pages", async () => {
    const store = operator.env.TIDEMARK_STORE!;
    // The output is kept, the secrets in it are not.
    const record = (await run("git", ["--git-dir", store, "log", "--all", "--format=%B", `--grep=Tidemark-Deployment: ${printedBy}`]))
      .stdout;
    expect(record).toContain("Output of web01:");
    expect(record).toContain("app: giving up");
    expect(record).toContain("the webhook secret: [redacted]");
    // The config tree's secrets as the unit printed them: the age file's value, and the SOPS file decrypted.
    expect(record).toContain("DB_PASSWORD is [redacted]");
    expect(record).toContain("secret: [redacted]");
    // Every object git can read, packed ones inflated and their deltas resolved, and each loose object inflated by hand.
    const places: Record<string, string> = {
      "every object of the store (git cat-file --batch-all-objects)": (
        await run("git", ["--git-dir", store, "cat-file", "--batch-all-objects", "--batch"])
      ).stdout,
    };
    const objects = join(store, "objects");
    let loose = 0;
    for (const dir of readdirSync(objects).filter((name) => /^[0-9a-f]{2}$/.test(name))) {
      for (const file of readdirSync(join(objects, dir))) {
        places[`loose object ${dir}${file}`] = inflateSync(readFileSync(join(objects, dir, file))).toString("latin1");
        loose++;
      }
    }
    expect(loose).toBeGreaterThan(0);
    const page = async (path: string) => {
      const answer = await fetch(`${serve.url}${path}`);
      expect(answer.status, path).toBe(200);
      return answer.text();
    };
    const deploymentPage = await page(`/deployments/${printedBy}`);
    expect(deploymentPage).toContain("app: giving up");
    places[`the page /deployments/${printedBy}`] = deploymentPage;
    places["the page /"] = await page("/");
    places["the page /environments/staging"] = await page("/environments/staging");
    // What was posted to GitHub (every status was refused, but sent) and what the operator queued in Redis.
    places["the statuses sent to GitHub"] = JSON.stringify(
      tap.seen.filter((request) => request.url.includes("/statuses/")).map((request) => request.body),
    );
    places["Redis"] = Object.values(await dumpRedis(redis)).join("\n");
    expect(leaks(places, printed)).toEqual([]);
  });

  it("not on the host outside the release: the displaced-file area keeps what the secret's link displaced, and nothing of the secret", async () => {
    const displaced = await shell.run(
      "web01",
      'cd /var/lib/tidemark/displaced && find . -type f | sort | while IFS= read -r f; do echo "== $f"; cat -- "$f"; done',
    );
    expect(displaced).toBe("== ./etc/app/db.env\nwhat was there before Tidemark");
    expect(await shell.run("web01", "readlink /etc/app/db.env; stat -c '%a %U' /var/lib/tidemark/apps/app/current/db.env")).toBe(
      "/var/lib/tidemark/apps/app/current/db.env\n600 root",
    );
    expect(leaks({ "the displaced-file area on web01": displaced }, secrets)).toEqual([]);
  });
});
