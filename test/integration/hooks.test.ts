import { beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import type { ApiRequest } from "../bed/forge/github-api.js";
import { run, waitFor } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import { bedConfig, HostShell, operatorEnv, reportingServeEnv } from "../helpers/host-shell.js";
import { OperatorProcess, type LogLine } from "../helpers/operator-process.js";
import { integrationLifecycle } from "../helpers/lifecycle.js";
import { tidemark } from "../helpers/run-cli.js";

const HOSTS = ["web01", "web02", "web03"];
const APP = "clusters/staging/_all/app";
const CURRENT = "/var/lib/tidemark/apps/app/current";
const LOG = "/root/hooks.log";

/** A hook that logs when it ran, where `current` pointed and what it was told, then fails if its release holds `fail-<name>` or `fail-<name>-on-<host>`. */
const hook = (name: string, extra = "") =>
  [
    "#!/bin/sh",
    `echo "$(date +%s%N) ${name} $TIDEMARK_HOST $(readlink ${CURRENT}) from=$TIDEMARK_FROM to=$TIDEMARK_TO path=$PATH" >> ${LOG}`,
    extra,
    `if [ -e fail-${name} ] || [ -e fail-${name}-on-$TIDEMARK_HOST ]; then echo "${name} refused on $TIDEMARK_HOST"; exit 3; fi`,
    "",
  ].join("\n");

type HookSpec = {
  name: string;
  phase: string;
  run: string;
  on?: string;
  timeoutSeconds?: number;
  onFailure?: string;
  irreversible?: boolean;
  user?: string;
};

/**
 * App hooks on three systemd hosts, deployed by the CLI with reporting to
 * the forge's GitHub stand-in: each hook is a script of the app's release
 * that logs to a file on its host, which the test reads.
 */
describe("app hooks around the switch, and their undo on rollback", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let shell: HostShell;
  let env: NodeJS.ProcessEnv;
  const releases: string[] = [];

  const owned = integrationLifecycle({ forge: () => bed?.forge });

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ systemdHosts: 3, forge: true, redis: true }), (it) => it.down());
    work = owned.own(await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo)), (it) => it.remove());
    shell = owned.own(new HostShell(bed), (it) => it.close());
    const operator = owned.own(operatorEnv(bed), (it) => it.remove());
    env = {
      ...operator.env,
      TIDEMARK_GITHUB_TOKEN: bed.forge!.token,
      TIDEMARK_GITHUB_API_URL: bed.forge!.apiUrl,
      TIDEMARK_GITHUB_WRITE_INTERVAL: "0.02",
    };
  });

  /** Commits the app at a version with these hooks and marker files, and deploys it; the CLI's JSON result. */
  async function deploy(version: string, hooks: HookSpec[], markers: string[] = [], { run = "exec sleep infinity" } = {}) {
    const scripts = ["pre", "post", "down-pre", "down-post", "once", "hang", "slow", "leak", "whoami"];
    const files: Record<string, string | null> = {
      "tidemark.yaml": bedConfig(
        bed,
        ["staging: { track: { branch: main }, tree: clusters/staging }"],
        "{ maxParallel: 3, canary: 0, maxFailures: 3 }",
      ),
      [`${APP}/systemd/app.service`]: `[Unit]\nDescription=app\n[Service]\nExecStart=/bin/sh ${CURRENT}/run.sh\n`,
      [`${APP}/run.sh`]: `${run}\n`,
      [`${APP}/version`]: `${version}\n`,
      [`${APP}/manifest.json`]: JSON.stringify({ systemd: { units_enabled: ["app.service"] }, hooks }),
      ...Object.fromEntries(scripts.map((name) => [`${APP}/hooks/${name}`, hook(name, HOOK_EXTRA[name])])),
    };
    for (const stale of (await work.git("ls-files", `${APP}/fail-*`)).split("\n").filter(Boolean)) files[stale] = null;
    for (const marker of markers) files[`${APP}/${marker}`] = "";
    const commit = await work.commit(files, version, { executable: scripts.map((name) => `${APP}/hooks/${name}`) });
    await work.push("main");
    await Promise.all(HOSTS.map((host) => shell.run(host, `rm -f ${LOG}`)));
    const result = await tidemark(["deploy", "staging", "--yes", "--json"], env);
    releases.push(commit);
    const json = JSON.parse(result.stdout || "{}") as { id?: string; hosts?: Array<{ host: string; outcome: string; detail?: string }> };
    return {
      code: result.code,
      stderr: result.stderr,
      commit,
      id: json.id,
      hosts: Object.fromEntries((json.hosts ?? []).map((host) => [host.host, host])),
    };
  }

  const version = (host: string) => shell.run(host, `cat ${CURRENT}/version 2>/dev/null || echo none`);
  const logOf = async (host: string) =>
    (await shell.run(host, `cat ${LOG} 2>/dev/null || true`))
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const [at = "0", name = "", onHost = "", current = "", ...rest] = line.split(" ");
        return { at: BigInt(at), name, host: onHost, current, rest: rest.join(" ") };
      });
  const hostStatus = (sha: string, host: string) =>
    waitFor(`the final tidemark/staging/${host} status of ${sha.slice(0, 7)}`, async () =>
      (await bed.forge!.apiRequests())
        .filter(
          (request): request is ApiRequest & { body: { context: string; state: string; description: string } } =>
            request.method === "POST" && request.status === 201 && request.path.endsWith(`/statuses/${sha}`),
        )
        .map(({ body }) => body)
        .find((body) => body.context === `tidemark/staging/${host}` && body.state !== "pending"),
    );

  it("a pre-activate hook that fails on web02 only: web02 is left as it was, the others deploy; the status names the hook and its last line", async () => {
    const first = await deploy("v1", [{ name: "migrate", phase: "pre-activate", run: "hooks/pre" }]);
    expect(first.code, first.stderr).toBe(0);
    const before = await shell.run("web02", `readlink ${CURRENT}`);

    const second = await deploy("v2", [{ name: "migrate", phase: "pre-activate", run: "hooks/pre" }], ["fail-pre-on-web02"]);
    expect(second.code).toBe(1);
    expect(second.hosts.web02).toMatchObject({
      outcome: "failed",
      detail: 'pre-activate hook "migrate" of app failed (exit 3): pre refused on web02; nothing switched',
    });
    expect(await Promise.all(HOSTS.map(version))).toEqual(["v2", "v1", "v2"]);
    expect(await shell.run("web02", `readlink ${CURRENT}`)).toBe(before);
    // The hook ran in the new release, before its switch, and saw the release it came from and goes to.
    for (const host of HOSTS) {
      const [ran] = await logOf(host);
      // One _all app: every host runs the same release.
      expect(ran).toMatchObject({ name: "pre", host, current: before });
      expect(ran!.rest).toMatch(new RegExp(`^from=[0-9a-f]{40} ${first.commit} to=[0-9a-f]{40} ${second.commit} path=/usr/local/sbin:`));
    }
    expect((await hostStatus(second.commit, "web02")).description).toContain(
      'pre-activate hook "migrate" of app failed (exit 3): pre refused on web02',
    );
  });

  it("a post-activate hook that fails: the host rolls back, the outgoing release's pre-rollback before the switch back, post-rollback after", async () => {
    const hooks = [
      { name: "smoke", phase: "post-activate", run: "hooks/post" },
      { name: "down", phase: "pre-rollback", run: "hooks/down-pre" },
      { name: "down-after", phase: "post-rollback", run: "hooks/down-post" },
    ];
    const good = await deploy("v3", hooks);
    expect(good.code, good.stderr).toBe(0);
    const v3 = await shell.run("web01", `readlink ${CURRENT}`);
    const bad = await deploy("v4", hooks, ["fail-post-on-web01"]);
    expect(bad.hosts.web01).toMatchObject({ outcome: "rolled-back" });
    expect(bad.hosts.web01!.detail).toMatch(/^post-activate hook "smoke" of app failed \(exit 3\): post refused on web01; rolled back to/);
    expect(await Promise.all(HOSTS.map(version))).toEqual(["v3", "v4", "v4"]);
    const ran = await logOf("web01");
    expect(ran.map(({ name }) => name)).toEqual(["post", "down-pre", "down-post"]);
    const v4 = ran[0]!.current;
    expect(v4).not.toBe(v3);
    // pre-rollback saw the outgoing release still current, post-rollback the one it went back to; in that order.
    expect(ran[1]).toMatchObject({ current: v4 });
    expect(ran[2]).toMatchObject({ current: v3 });
    expect(ran[1]!.at < ran[2]!.at).toBe(true);
    expect(ran[1]!.rest).toMatch(new RegExp(`^from=${v4.split("/").at(-1)!} ${bad.commit} to=${v3.split("/").at(-1)!} ${good.commit} `));
    // The hosts that deployed ran no rollback hook.
    expect((await logOf("web02")).map(({ name }) => name)).toEqual(["post"]);
  });

  it("on: once runs on the first host only, before any other starts; its failure halts the rollout with nothing switched anywhere", async () => {
    const hooks = [
      { name: "schema", phase: "pre-activate", run: "hooks/once", on: "once" },
      { name: "migrate", phase: "pre-activate", run: "hooks/pre" },
    ];
    const done = await deploy("v5", hooks);
    expect(done.code, done.stderr).toBe(0);
    // The plan, printed before the deployment, names the hooks each host runs.
    expect(done.stderr).toContain(
      "  hook    pre-activate app/schema  (once: on the first host of the rollout only)\n  hook    pre-activate app/migrate\n",
    );
    const logs = await Promise.all(HOSTS.map(logOf));
    expect(logs.map((log) => log.map(({ name }) => name))).toEqual([["once", "pre"], ["pre"], ["pre"]]);
    const once = logs[0]![0]!.at;
    for (const log of logs.slice(1)) expect(log[0]!.at > once).toBe(true);

    const running = await Promise.all(HOSTS.map((host) => shell.run(host, `readlink ${CURRENT}`)));
    const failed = await deploy("v6", hooks, ["fail-once"]);
    expect(failed.code).toBe(1);
    expect(failed.hosts.web01).toMatchObject({
      outcome: "failed",
      detail: expect.stringContaining('pre-activate hook "schema" of app failed (exit 3)') as string,
    });
    expect([failed.hosts.web02?.outcome, failed.hosts.web03?.outcome]).toEqual(["skipped", "skipped"]);
    expect(await Promise.all(HOSTS.map((host) => shell.run(host, `readlink ${CURRENT}`)))).toEqual(running);
    expect((await Promise.all(HOSTS.map(logOf))).map((log) => log.map(({ name }) => name))).toEqual([["once"], [], []]);
  });

  it("a hook that hangs is killed at its timeout with everything it started, and the host lock is released", async () => {
    const hung = await deploy("v7", [{ name: "wedge", phase: "post-activate", run: "hooks/hang", timeoutSeconds: 2 }]);
    expect(hung.hosts.web01).toMatchObject({ outcome: "rolled-back" });
    expect(hung.hosts.web01!.detail).toMatch(/^post-activate hook "wedge" of app timed out and was killed/);
    for (const host of HOSTS) {
      // Nothing the hook started is left: its sleeps carry a marker in their arguments.
      expect(await shell.run(host, "pgrep -f 'sleep 314[12]' || echo none")).toBe("none");
      expect(await shell.run(host, "flock -n /var/lib/tidemark/lock true && echo free")).toBe("free");
    }
  });

  it("the host lock is held through the last hook: a deployment that comes meanwhile cannot take it", async () => {
    const deploying = deploy("v8", [{ name: "warm", phase: "post-activate", run: "hooks/slow" }]);
    await waitFor(
      "the slow hook to start on web01",
      async () => (await shell.run("web01", "test -e /root/slow-started && echo yes || true")) === "yes",
      {
        timeoutMs: 60_000,
        intervalMs: 100,
      },
    );
    expect(await shell.run("web01", "flock -n /var/lib/tidemark/lock true && echo free || echo held")).toBe("held");
    const other = await tidemark(["deploy", "staging", "--yes", "--json"], env);
    expect(other.code).toBe(3);
    expect(other.stdout).toMatch(/locked: another deployment is running on web01/);
    const done = await deploying;
    expect(done.code, done.stderr).toBe(0);
    expect(await shell.run("web01", "flock -n /var/lib/tidemark/lock true && echo free || echo held")).toBe("free");
  });
  it("irreversible: a rollback past it is reported so, and tidemark rollback across it asks for --force", async () => {
    const hooks = [
      { name: "migrate", phase: "pre-activate", run: "hooks/pre", irreversible: true },
      { name: "smoke", phase: "post-activate", run: "hooks/post" },
      { name: "down", phase: "pre-rollback", run: "hooks/down-pre" },
    ];
    const broken = await deploy("v9", hooks, ["fail-post-on-web03"]);
    expect(broken.hosts.web03!.detail).toMatch(/^\(irreversible: migrate\) post-activate hook "smoke" of app failed \(exit 3\)/);
    expect((await hostStatus(broken.commit, "web03")).description).toMatch(
      /^rolled-back \(irreversible: migrate\) post-activate hook "smoke"/,
    );

    const target = releases.at(-2)!;
    const refused = await tidemark(["rollback", "staging", target, "--yes"], env);
    expect(refused.code).toBe(64);
    expect(refused.stderr).toContain("goes back past hooks that have no down: web01: app/migrate, web02: app/migrate");
    expect(refused.stderr).toContain("IRREVERSIBLE_HOOK");
    await Promise.all(HOSTS.map((host) => shell.run(host, `rm -f ${LOG}`)));
    const forced = await tidemark(["rollback", "staging", target, "--yes", "--force", "--json"], env);
    expect(forced.code, forced.stderr).toBe(0);
    const back = (JSON.parse(forced.stdout) as { hosts: Array<{ host: string; detail?: string }> }).hosts.find(
      (host) => host.host === "web01",
    );
    expect(back?.detail).toBe("(irreversible: migrate) went back past it: what it did stays");
    expect(await Promise.all(HOSTS.map(version))).toEqual(["v8", "v8", "v8"]);
    // A return runs the outgoing release's pre-rollback before its switch, then the activate hooks of the release it returns to.
    expect((await logOf("web01")).map(({ name }) => name)).toEqual(["down-pre", "slow", "slow-done"]);
    expect(await tidemark(["unpin", "staging"], env)).toMatchObject({ code: 0 });
  });

  it("what a hook prints is kept with the configured secrets redacted, in the store, the statuses and the page", async () => {
    const token = bed.forge!.token;
    await Promise.all(
      HOSTS.map((host) => shell.run(host, `echo ${Buffer.from(`the token is ${token}\n`).toString("base64")} | base64 -d > /root/leak`)),
    );
    const warned = await deploy("v10", [
      { name: "notify", phase: "post-activate", run: "hooks/leak", onFailure: "warn" },
      // A hook with a user runs as that user, from the same read-only release.
      { name: "whoami", phase: "post-activate", run: "hooks/whoami", onFailure: "warn", user: "nobody" },
    ]);
    expect(warned.code, warned.stderr).toBe(0);
    expect(warned.hosts.web01).toMatchObject({
      outcome: "deployed",
      detail:
        'post-activate hook "notify" of app failed (exit 3): leak refused on web01 (onFailure: warn); post-activate hook "whoami" of app failed (exit 3): nobody (onFailure: warn)',
    });
    const store = env.TIDEMARK_STORE!;
    const record = (await run("git", ["--git-dir", store, "log", "--all", "-1", "--format=%B"])).stdout;
    expect(record).toContain("the token is [redacted]");
    expect(record).not.toContain(token);
    const statuses = JSON.stringify((await bed.forge!.apiRequests()).map((request) => request.body));
    expect(statuses).not.toContain(token);
    // The operator's page, from the same store: each hook, how it ended and took, and what it printed.
    const serve = owned.own(await OperatorProcess.start("serve", reportingServeEnv(bed, env)), (it) => it.stop());
    const page = await (await fetch(`${serve.url}/deployments/${warned.id!}`)).text();
    expect(page).toMatch(/<h3>Hooks<\/h3>/);
    expect(page).toMatch(/<td>app\/notify<\/td><td>post-activate<\/td><td>3<\/td><td>\d+ ms<\/td>/);
    expect(page).toContain("the token is [redacted]");
    expect(page).not.toContain(token);
    await serve.stop();
  });
  it("a deployment queued by a push while a hook runs starts after that hook ends: the operator holds the host through it", async () => {
    const hooks = [{ name: "warm", phase: "post-activate", run: "hooks/slow" }];
    // The app as the CLI last left it, with the slow hook, deployed first so that the pushes below change one file each.
    expect((await deploy("v11", hooks)).code).toBe(0);
    const serve = owned.own(await OperatorProcess.start("serve", reportingServeEnv(bed, env)), (it) => it.stop());
    await bed.forge!.addHook(bed.forgeRepo, { url: `${serve.url}/webhooks/github`, secret: bed.webhookSecret });
    const finished = (commit: string) => (line: LogLine) =>
      line.environment === "staging" && line.commit === commit && typeof line.outcome === "string";
    await Promise.all(HOSTS.map((host) => shell.run(host, `rm -f ${LOG}`)));
    const first = await work.commit({ [`${APP}/version`]: "v12\n" }, "v12");
    await work.push("main");
    await waitFor(
      "v12's slow hook to start on web01",
      async () => (await shell.run("web01", "test -e /root/slow-started && echo yes || true")) === "yes",
      {
        timeoutMs: 60_000,
        intervalMs: 100,
      },
    );
    const second = await work.commit({ [`${APP}/version`]: "v13\n" }, "v13");
    await work.push("main");
    expect((await serve.waitForLog(finished(first), 90_000)).outcome).toBe("succeeded");
    expect((await serve.waitForLog(finished(second), 90_000)).outcome).toBe("succeeded");
    // On each host: v12's hook started and ended, then v13's started; never two at once.
    for (const host of HOSTS) expect((await logOf(host)).map(({ name }) => name)).toEqual(["slow", "slow-done", "slow", "slow-done"]);
    const web01 = await logOf("web01");
    expect(web01[2]!.at > web01[1]!.at).toBe(true);
    expect(await Promise.all(HOSTS.map(version))).toEqual(["v13", "v13", "v13"]);
  });
});

/** What some hooks do besides logging. */
const HOOK_EXTRA: Record<string, string> = {
  hang: "exec sh -c 'sleep 3141 & sleep 3142; wait'",
  slow: `touch /root/slow-started; sleep 4; rm -f /root/slow-started; echo "$(date +%s%N) slow-done $TIDEMARK_HOST -" >> ${LOG}`,
  leak: 'cat /root/leak; echo "leak refused on $TIDEMARK_HOST"; exit 3',
  whoami: "id -un; exit 3",
};
