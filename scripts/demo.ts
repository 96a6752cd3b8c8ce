import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Octokit } from "@octokit/rest";
import { main } from "../src/cli/main.js";
import { TestBed } from "../test/bed/bed.js";
import { freePort } from "../test/bed/ports.js";
import { GiveUp, isAlive, waitFor } from "../test/bed/proc.js";
import { WorkRepo } from "../test/bed/work-repo.js";
import { HostShell } from "../test/helpers/host-shell.js";

/**
 * The README's main command: the whole story on a real test bed (3 systemd
 * hosts, a forge with its GitHub stand-in, Redis) with `tidemark serve`
 * running as it would in production. Every step is checked; the first one
 * that does not happen as printed ends the demo with exit code 1. `--keep`
 * leaves everything running to explore.
 */
const { values } = parseArgs({ options: { keep: { type: "boolean", default: false } } });
const BIN = fileURLToPath(new URL("../bin/tidemark.js", import.meta.url));
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
const step = (text: string) => console.log(`\n▸ ${text}`);
const say = (text: string) => console.log(`  ${text}`);
const check = (text: string) => console.log(`  ✓ ${text}`);
const indent = (text: string) =>
  text
    .trimEnd()
    .split("\n")
    .map((line) => `    │ ${line}`)
    .join("\n");

const STAGING = ["web01", "web02"];
/** The app, said once for every host in the tree's `_all` layer; `app.conf` is rendered per host from tidemark.yaml's values. */
const app = (version: string) => ({
  "fleet/_all/app/systemd/app.service":
    "[Unit]\nDescription=the demo app\n\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/app/current/run.sh\n",
  "fleet/_all/app/manifest.json": `${JSON.stringify({ systemd: { units_enabled: ["app.service"] } }, null, 2)}\n`,
  "fleet/_all/app/run.sh": "exec sleep infinity\n",
  "fleet/_all/app/app.conf.tmpl": "name = {{ host.name }}\nport = {{ vars.port }}\n",
  "fleet/_all/app/version": `${version}\n`,
});

step("bringing up the test bed: 3 systemd hosts, a forge (git over smart HTTP + GitHub stand-in), Redis");
const bed = await TestBed.up({ systemdHosts: 3, redis: true, forge: true, owner: values.keep ? null : process.pid });
const shell = new HostShell(bed);
const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
let serve: { pid: number; log: string } | undefined;
let failed = false;
try {
  for (const host of bed.hosts) say(`${host.name}  ${host.address}  systemd ${await shell.run(host.name, "systemctl is-system-running")}`);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const operatorEnv = {
    PATH: process.env.PATH,
    TIDEMARK_REPO: bed.forge!.cloneUrl(bed.forgeRepo),
    TIDEMARK_STORE: `${bed.dir}/operator/store.git`,
    TIDEMARK_MIRRORS: `${bed.dir}/operator/mirrors`,
    TIDEMARK_SSH_KEY: bed.clientKeyPath,
    TIDEMARK_REDIS_URL: bed.redis!.url,
  };
  serve = bed.spawn("tidemark-serve", process.execPath, [BIN, "serve"], {
    ...operatorEnv,
    TIDEMARK_LISTEN: `127.0.0.1:${port}`,
    TIDEMARK_PUBLIC_URL: url,
    TIDEMARK_WEBHOOK_SECRET: bed.webhookSecret,
    TIDEMARK_POLL_INTERVAL: "30",
    TIDEMARK_SETTLE: "0.5",
    TIDEMARK_GITHUB_TOKEN: bed.forge!.token,
    TIDEMARK_GITHUB_API_URL: bed.forge!.apiUrl,
    TIDEMARK_GITHUB_WRITE_INTERVAL: "0.05",
  });
  const running = serve;
  const logLines = () =>
    readFileSync(running.log, "utf8")
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const waitLog = (what: string, match: (line: Record<string, unknown>) => boolean) =>
    waitFor(
      what,
      () => {
        const line = logLines().find(match);
        if (line) return line;
        if (!isAlive(running.pid)) throw new GiveUp(`tidemark serve exited:\n${readFileSync(running.log, "utf8").slice(-4000)}`);
        return undefined;
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
  await waitLog("tidemark serve to start", (line) => line.msg === "tidemark serve started");
  await bed.forge!.addHook(bed.forgeRepo, { url: `${url}/webhooks/github`, secret: bed.webhookSecret });
  say(`tidemark serve (pid ${serve.pid}) at ${url}, the forge's push webhook points at it`);

  // The CLI pushes tags: its repo URL carries the forge's credentials, as a person's git would.
  const cli = async (...args: string[]) => {
    let out = "";
    const code = await main(["node", "tidemark", ...args], {
      env: { ...operatorEnv, TIDEMARK_REPO: bed.forge!.pushUrl(bed.forgeRepo), TIDEMARK_SETTLE: "0.5" },
      out: (text) => (out += text),
      err: (text) => (out += text),
    });
    if (code !== 0) throw new Error(`tidemark ${args.join(" ")} exited ${code}:\n${out}`);
    return out;
  };
  const octokit = new Octokit({ baseUrl: bed.forge!.apiUrl, auth: bed.forge!.token });
  const [owner, repo] = bed.forgeRepo.split("/") as [string, string];
  const finalStatus = (sha: string, context: string) =>
    waitFor(
      `the final ${context} status of ${sha.slice(0, 7)}`,
      async () => {
        const { data } = await octokit.repos.getCombinedStatusForRef({ owner, repo, ref: sha });
        const status = data.statuses.find((candidate) => candidate.context === context);
        return status && status.state !== "pending" ? status : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
  const finished = (environment: string, commit: string, skip = new Set<unknown>()) =>
    waitLog(
      `the ${environment} deployment of ${commit.slice(0, 7)}`,
      (line) =>
        line.environment === environment && line.commit === commit && typeof line.outcome === "string" && !skip.has(line.deployment),
    );
  const version = (host: string) => shell.run(host, "cat /var/lib/tidemark/apps/app/current/version 2>/dev/null || echo none");
  const expectVersions = async (hosts: string[], expected: string) => {
    const found = await Promise.all(hosts.map(version));
    if (found.some((value) => value !== expected))
      throw new Error(`expected ${hosts.join(", ")} to run ${expected}, found ${found.join(", ")}`);
  };
  const page = async (id: unknown, ...expected: string[]) => {
    const response = await fetch(`${url}/deployments/${String(id)}`);
    const text = await response.text();
    const missing = expected.filter((part) => !text.includes(part));
    if (response.status !== 200 || missing.length > 0)
      throw new Error(`the page of deployment ${String(id)} (HTTP ${response.status}) lacks ${JSON.stringify(missing)}`);
    return `${url}/deployments/${String(id)}`;
  };

  // web02 gives its own value of port: a host's value wins over its environment's.
  const hostsYaml = bed.hosts.map(
    (host) =>
      `  ${host.name}: { address: ${host.address}, port: ${host.port}, hostKey: "${host.hostKey}"${host.name === "web02" ? ", vars: { port: 8081 }" : ""} }`,
  );
  step("the fleet starts at v0.9: staging follows main, production follows the tag `production`, one config tree for both");
  await work.commit(
    {
      "tidemark.yaml": [
        "environments:",
        "  staging: { track: { branch: main }, tree: fleet, hosts: [web01, web02], vars: { port: 8080 } }",
        "  production: { track: { tag: production }, tree: fleet, hosts: [web03], vars: { port: 80 } }",
        "hosts:",
        ...hostsYaml,
        "rollout: { maxParallel: 2, canary: 0, maxFailures: 2 }",
        "",
      ].join("\n"),
      ...app("v0.9"),
    },
    "v0.9",
  );
  await work.tag("v0.9.0");
  await work.tag("production");
  const v09 = await work.head();
  await work.push("main", "v0.9.0", "production");
  const [, firstProduction] = await Promise.all([finished("staging", v09), finished("production", v09)]);
  await expectVersions([...STAGING, "web03"], "v0.9");
  const conf = await Promise.all([...STAGING, "web03"].map((host) => shell.run(host, "cat /var/lib/tidemark/apps/app/current/app.conf")));
  if (JSON.stringify(conf) !== JSON.stringify(["name = web01\nport = 8080", "name = web02\nport = 8081", "name = web03\nport = 80"]))
    throw new Error(`app.conf was not rendered per host: ${JSON.stringify(conf)}`);
  check(`web01, web02 (staging) and web03 (production) run v0.9, each with its own app.conf rendered from fleet/_all   [${elapsed()}]`);

  step("1. a push to main deploys staging");
  const v1 = await work.commit(app("v1"), "app v1");
  await work.push("main");
  say(`git push: ${v1.slice(0, 7)} "app v1"`);
  const deployedV1 = await finished("staging", v1);
  await expectVersions(STAGING, "v1");
  const v1Status = await finalStatus(v1, "tidemark/staging");
  if (v1Status.state !== "success") throw new Error(`tidemark/staging on v1 is ${v1Status.state}: ${v1Status.description}`);
  check(`web01 and web02 run v1; tidemark/staging: ${v1Status.state} "${v1Status.description}"`);
  say(`page: ${await page(deployedV1.deployment, "deployed", "Timeline")}   [${elapsed()}]`);

  step(
    "2. a commit whose unit fails on web02 (its own run.sh overrides the shared one): web02 rolls itself back, web01 keeps the new version",
  );
  const broken = await work.commit(
    {
      ...app("v2"),
      "fleet/web02/app/run.sh": "echo 'app: cannot parse /etc/app.conf: unknown key \"colour\"' >&2\nexit 3\n",
    },
    "app v2 (broken on web02)",
  );
  await work.push("main");
  say(`git push: ${broken.slice(0, 7)} "app v2 (broken on web02)"`);
  const rolledBack = await finished("staging", broken);
  await expectVersions(["web01"], "v2");
  await expectVersions(["web02"], "v1");
  const brokenStatus = await finalStatus(broken, "tidemark/staging");
  if (brokenStatus.state !== "failure")
    throw new Error(`tidemark/staging on the broken commit is ${brokenStatus.state}: ${brokenStatus.description}`);
  check("web02 saw app.service fail and went back to v1 by itself; web01 runs v2");
  for (const context of ["tidemark/staging", ...STAGING.map((host) => `tidemark/staging/${host}`)]) {
    const status = await finalStatus(broken, context);
    say(`${context}: ${status.state} "${status.description}"`);
  }
  say(
    `page (failed unit, its output, the rollback): ${await page(rolledBack.deployment, "rolled-back", "cannot parse /etc/app.conf", "switch (rollback)")}   [${elapsed()}]`,
  );

  step("3. git revert: back to v1, reported as a rollback, nothing uploaded");
  await work.git("revert", "--no-edit", "HEAD");
  await work.push("main");
  const revert = await work.head();
  say(`git revert HEAD && git push: ${revert.slice(0, 7)}`);
  const reverted = await finished("staging", revert);
  await expectVersions(STAGING, "v1");
  const web01 = (reverted.hosts as Array<{ host: string; outcome: string; uploadedBytes?: number }>).find((host) => host.host === "web01");
  if (
    (reverted.returnTo as { id?: string } | undefined)?.id !== deployedV1.deployment ||
    web01?.outcome !== "deployed" ||
    web01.uploadedBytes !== 0
  )
    throw new Error(
      `the revert was not a return to ${String(deployedV1.deployment)} with nothing uploaded to web01: ${JSON.stringify(reverted)}`,
    );
  const revertStatus = await finalStatus(revert, "tidemark/staging");
  check(
    `web01 is back on v1 from the release dir it kept (0 bytes uploaded), web02 untouched; tidemark/staging: ${revertStatus.state} "${revertStatus.description}"`,
  );
  say(`page: ${await page(reverted.deployment, "to the tree of", "nothing uploaded")}   [${elapsed()}]`);

  step("4. release: tag v1.0.0 and move the production pin to it");
  const release = revert;
  await work.tag("v1.0.0");
  await work.tag("production", { force: true });
  await work.push("main", "v1.0.0");
  await work.git("push", "--quiet", "--force", "origin", "refs/tags/production");
  say(`git tag v1.0.0 && git tag -f production && git push -f origin production: ${release.slice(0, 7)}`);
  const promoted = await finished("production", release);
  await expectVersions(["web03"], "v1");
  const releaseStatus = await finalStatus(release, "tidemark/production");
  check(`web03 runs v1; tidemark/production: ${releaseStatus.state} "${releaseStatus.description}"`);
  say(`page: ${await page(promoted.deployment, "deployed")}   [${elapsed()}]`);

  step("5. tidemark rollback production: the pin moves back, production follows");
  const output = await cli("rollback", "production", "--yes");
  console.log(indent(output));
  const back = await finished("production", v09, new Set([firstProduction.deployment]));
  await expectVersions(["web03"], "v0.9");
  const tag = (await work.git("ls-remote", "origin", "refs/tags/production")).split("\t")[0];
  if (tag !== v09 || (back.returnTo as { id?: string } | undefined)?.id !== firstProduction.deployment)
    throw new Error(`production is not back at v0.9.0 as a rollback: tag ${String(tag)}, ${JSON.stringify(back)}`);
  const backStatus = await finalStatus(v09, "tidemark/production");
  check(
    `the tag production is at ${v09.slice(0, 7)} (v0.9.0) again; web03 runs v0.9; tidemark/production: ${backStatus.state} "${backStatus.description}"`,
  );

  step("history, as the store keeps it (tidemark history staging)");
  console.log(indent(await cli("history", "staging")));
  const violations = await bed.forge!.violations();
  if (violations.length > 0) throw new Error(`the GitHub stand-in refused requests: ${JSON.stringify(violations)}`);
  console.log(`\n✓ every step checked in ${elapsed()}; every GitHub request matched GitHub's OpenAPI description`);
  console.log(`  the operator's page: ${url}/`);
} catch (error) {
  failed = true;
  console.error(`\n✗ ${error instanceof Error ? error.message : String(error)}`);
  if (serve) console.error(`  tidemark serve's log: ${serve.log}`);
} finally {
  shell.close();
  work.remove();
  if (values.keep) {
    console.log(`\nEverything is still running (test bed ${bed.id}${serve ? `, tidemark serve pid ${serve.pid}` : ""}).`);
    if (serve) console.log(`  tidemark serve's log: ${serve.log}`);
    console.log(
      `  the bed: ${JSON.stringify(bed.describe().forge ? { forge: bed.describe().forge!.url, redis: bed.describe().redis?.url } : {})}`,
    );
    console.log(`Stop it all with: npm run testbed -- down ${bed.id}`);
  } else {
    if (serve && isAlive(serve.pid)) {
      process.kill(serve.pid, "SIGTERM");
      const pid = serve.pid;
      await waitFor("tidemark serve to stop", () => !isAlive(pid), { timeoutMs: 30_000 }).catch(() => undefined);
    }
    await bed.down();
  }
}
process.exit(failed ? 1 : 0);
