import { beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import type { ApiRequest } from "../bed/forge/github-api.js";
import { waitFor } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import { bedConfig, HostShell, operatorEnv, reportingServeEnv } from "../helpers/host-shell.js";
import { OperatorProcess } from "../helpers/operator-process.js";
import { tidemark } from "../helpers/run-cli.js";
import { integrationLifecycle } from "../helpers/lifecycle.js";

const HOSTS = ["web01", "web02"];
const SITE = "/var/lib/tidemark/apps/app/current/conf/site.conf";
const FIGHTER = "tidemark-test-fighter";

type HistoryJson = Array<{
  id: string;
  trigger: string;
  sourceCommit: string;
  hosts: Array<{ host: string; outcome: string; detail?: string }>;
}>;

/** Two apps, each with its unit: a heal of one must leave the other's running as it is. */
const apps = (version: string) =>
  Object.fromEntries(
    ["app", "other"].flatMap((app) =>
      Object.entries({
        [`${app}/systemd/${app}.service`]: `[Unit]\nDescription=${app}\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/${app}/current/run.sh\n`,
        [`${app}/run.sh`]: "exec sleep infinity\n",
        [`${app}/version`]: `${version}\n`,
        [`${app}/conf/site.conf`]: `listen 80; # ${app}\n`,
        [`${app}/manifest.json`]: JSON.stringify({ systemd: { units_enabled: [`${app}.service`] } }),
      }).map(([path, content]) => [`clusters/staging/_all/${path}`, content]),
    ),
  );

/**
 * The operator's drift checks (`drift:` in tidemark.yaml), every 2 s: a hand
 * edit turns the `tidemark/staging/drift` status red with `warn`, is undone
 * with `heal` (a `heal` deployment in the store), and a host that something
 * keeps changing ends `fighting` after 3 heals.
 */
describe("the operator watches for drift: warn, heal, fighting", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let shell: HostShell;
  let operator: ReturnType<typeof operatorEnv>;
  let serve: OperatorProcess;
  let deployed: string;

  const config = (mode: string) =>
    bedConfig(
      bed,
      [`staging: { track: { branch: main }, tree: clusters/staging, drift: { mode: ${mode}, interval: 2s } }`],
      "{ maxParallel: 2, canary: 0 }",
    );
  const driftStatuses = async (sha: string) =>
    (await bed.forge!.apiRequests())
      .filter(
        (request): request is ApiRequest & { body: { context: string; state: string; description: string } } =>
          request.method === "POST" && request.path.endsWith(`/statuses/${sha}`) && request.status === 201,
      )
      .filter(({ body }) => body.context === "tidemark/staging/drift")
      .map(({ body }) => `${body.state} ${body.description}`);
  /** Waits for a drift status posted after the first `since` ones. */
  const waitStatus = (sha: string, wanted: string, since = 0, timeoutMs = 60_000) =>
    waitFor(
      `the drift status "${wanted}" on ${sha.slice(0, 7)}`,
      async () => {
        const seen = (await driftStatuses(sha)).slice(since);
        if (seen.includes(wanted)) return true;
        throw new Error(`posted so far: ${JSON.stringify(seen)}`);
      },
      { timeoutMs, intervalMs: 200 },
    );
  const posted = async () => (await driftStatuses(deployed)).length;
  const history = async () => JSON.parse((await tidemark(["history", "staging", "--json"], operator.env)).stdout) as HistoryJson;
  const heals = async (host: string) =>
    (await history()).filter(
      (entry) => entry.trigger === "heal" && entry.hosts.some((each) => each.host === host && each.outcome === "deployed"),
    );
  const started = (host: string, unit: string) => shell.run(host, `systemctl show -P ActiveEnterTimestampMonotonic ${unit}`);
  /** Pushes tidemark.yaml with another drift mode; the deploy job it starts (no change for the hosts) sets the schedule. */
  async function setMode(mode: string) {
    const since = serve.lines.length;
    await work.commit({ "tidemark.yaml": config(mode) }, `drift ${mode}`);
    await work.push("main");
    await serve.waitForLog((line) => line.msg === "staging: no-change", 30_000, since);
  }

  const owned = integrationLifecycle({ forge: () => bed?.forge, log: () => serve });

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ systemdHosts: 2, redis: true, forge: true }), (it) => it.down());
    work = owned.own(await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo)), (it) => it.remove());
    shell = owned.own(new HostShell(bed), (it) => it.close());
    operator = owned.own(operatorEnv(bed), (it) => it.remove());
    serve = await OperatorProcess.start("serve", reportingServeEnv(bed, operator.env, { TIDEMARK_LOG_LEVEL: "debug" }));
    await bed.forge!.addHook(bed.forgeRepo, { url: `${serve.url}/webhooks/github`, secret: bed.webhookSecret });
    owned.own(shell, (it) => Promise.all(HOSTS.map((host) => it.run(host, `systemctl stop ${FIGHTER} 2>/dev/null; true`))));
    deployed = await work.commit({ "tidemark.yaml": config("warn"), ...apps("v1") }, "v1");
    await work.push("main");
    await serve.waitForLog((line) => line.msg === "staging: deployment succeeded" && line.commit === deployed, 60_000);
  });

  it("warn: a clean fleet is green; a hand edit turns the status red, shows on the page and in /metrics, and stays", async () => {
    await waitStatus(deployed, "success no drift on 2 hosts");
    await shell.run("web02", `chmod u+w ${SITE} && echo 'listen 8080;' >> ${SITE}`);
    await waitStatus(deployed, "failure web02: app/conf/site.conf modified, app/conf/site.conf mode");
    const metrics = await (await fetch(`${serve.url}/metrics`)).text();
    expect(metrics).toMatch(/^tidemark_drift_hosts\{environment="staging"\} 1$/m);
    expect(metrics).toMatch(/^tidemark_drift_findings\{environment="staging",kind="modified"\} 1$/m);
    expect(metrics).toMatch(/^tidemark_drift_findings\{environment="staging",kind="mode"\} 1$/m);
    const page = await (await fetch(`${serve.url}/environments/staging`)).text();
    expect(page).toContain("drift on 1 of 2 hosts");
    expect(page).toMatch(/modified <code>app\/conf\/site\.conf<\/code>/);
    // warn reports, it does not touch: two more checks later the edit is still there.
    const checks = serve.lines.filter((line) => line.msg === "staging: drift check: drift on 1 of 2 hosts").length;
    await serve.waitForLog((line) => line.msg === "staging: drift check: drift on 1 of 2 hosts", 30_000, serve.lines.length);
    expect(serve.lines.filter((line) => line.msg === "staging: drift check: drift on 1 of 2 hosts").length).toBeGreaterThan(checks);
    expect(await shell.run("web02", `tail -n 1 ${SITE}`)).toBe("listen 8080;");
    expect(await heals("web02")).toEqual([]);
  }, 120_000);

  it("heal: the edit is undone within the interval and one deployment, in a fresh release dir, restarting only its app's unit", async () => {
    const before = { app: await started("web02", "app.service"), other: await started("web02", "other.service") };
    const since = await posted();
    await setMode("heal");
    await waitFor(
      "web02's site.conf to be as git has it",
      async () => ((await shell.run("web02", `cat ${SITE}`)) === "listen 80; # app" ? true : undefined),
      {
        timeoutMs: 30_000,
        intervalMs: 200,
      },
    );
    await waitStatus(deployed, "success healed web02: app/conf/site.conf modified, app/conf/site.conf mode; 1 clean", since);
    const [heal] = await heals("web02");
    expect(heal).toMatchObject({
      trigger: "heal",
      sourceCommit: deployed,
      hosts: [
        { host: "web01", outcome: "unchanged" },
        {
          host: "web02",
          outcome: "deployed",
          detail: expect.stringContaining("healed drift: app/conf/site.conf modified, app/conf/site.conf mode") as string,
        },
      ],
    });
    // The release dir the edit was in was built again from git, not reused: its detail says so, and the file is read-only again.
    expect(heal!.hosts[1]!.detail).toContain("rebuilt app's release");
    expect(await shell.run("web02", `stat -c %a ${SITE}`)).toBe("444");
    expect(await started("web02", "app.service")).not.toBe(before.app);
    expect(await started("web02", "other.service")).toBe(before.other);
    await waitStatus(deployed, "success no drift on 2 hosts", since, 30_000);
    const drift = await tidemark(["drift", "staging"], operator.env);
    expect(drift.code, drift.stdout + drift.stderr).toBe(0);
  }, 120_000);

  it("fighting: a host that a loop keeps changing is healed 3 times, then left alone and reported", async () => {
    await shell.run("web01", `systemd-run --unit=${FIGHTER} /bin/sh -c 'while :; do echo fight >> ${SITE}; sleep 0.5; done'`);
    await waitStatus(
      deployed,
      "failure web01: fighting (healed 3 times within an hour, changed again): app/conf/site.conf modified",
      0,
      90_000,
    );
    expect(await heals("web01")).toHaveLength(3);
    // Left alone: no fourth heal while the loop goes on.
    const fighting = serve.lines.length;
    await serve.waitForLog((line) => line.msg === "staging: web01 fighting", 30_000, fighting);
    expect(await heals("web01")).toHaveLength(3);
    const page = await (await fetch(`${serve.url}/environments/staging`)).text();
    expect(page).toContain("fighting");
    await shell.run("web01", `systemctl stop ${FIGHTER}`);
  }, 180_000);
});
