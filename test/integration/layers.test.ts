import { beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import { WorkRepo } from "../bed/work-repo.js";
import { bedConfig, HostShell, operatorEnv } from "../helpers/host-shell.js";
import { integrationLifecycle } from "../helpers/lifecycle.js";
import { tidemark } from "../helpers/run-cli.js";
import { journalCursors, sshLogins } from "../helpers/sshd-logins.js";

const HOSTS = ["web01", "web02", "web03"] as const;

interface DeploymentJson {
  sourceCommit: string;
  returnTo?: { id: string; sourceCommit: string };
  id: string;
  hosts: Array<{ host: string; outcome: string; uploadedBytes?: number }>;
}

/**
 * A config tree said once for many hosts, on real systemd hosts through the
 * built CLI: one app in `_all`, one file of it overridden by web03, one
 * template rendered per host from the values of tidemark.yaml.
 */
describe("layers and templates, deployed", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let shell: HostShell;
  let env: NodeJS.ProcessEnv;

  /** A file of the host's current release (the shell trims its last newline). */
  const read = (host: string, file: string) => shell.run(host, `cat /var/lib/tidemark/apps/app/current/${file}`);
  const deploy = async () => {
    const result = await tidemark(["deploy", "production", "--yes", "--json"], env);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as DeploymentJson;
  };

  const owned = integrationLifecycle({ forge: () => bed?.forge });

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ systemdHosts: 3, forge: true }), (it) => it.down());
    work = owned.own(await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo)), (it) => it.remove());
    shell = owned.own(new HostShell(bed), (it) => it.close());
    const operator = owned.own(operatorEnv(bed), (it) => it.remove());
    env = { ...operator.env, TIDEMARK_SETTLE: "0.3" };
    const yaml = bedConfig(
      bed,
      ["production: { track: { branch: main }, tree: fleet, vars: { port: 80 } }"],
      "{ maxParallel: 3, canary: 0, maxFailures: 0 }",
    ).replace(/^( {2}web02: \{.*)( \})$/m, "$1, vars: { port: 8080 }$2");
    await work.commit(
      {
        "tidemark.yaml": `${yaml}groups:\n  web: { hosts: [web01, web02, web03], vars: { greeting: hello } }\n`,
        "fleet/_all/app/manifest.json": JSON.stringify({ systemd: { units_enabled: ["app.service"] } }),
        "fleet/_all/app/systemd/app.service": "[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/app/current/run.sh\n",
        "fleet/_all/app/run.sh": "exec sleep infinity\n",
        "fleet/_all/app/app.conf": "shared 1\n",
        "fleet/_groups/web/app/site.conf.tmpl": "{{ vars.greeting }} from {{ host.name }} on port {{ vars.port }}\n",
        "fleet/web03/app/app.conf": "web03's own\n",
      },
      "one app for every host, web03's app.conf its own",
    );
    await work.push("main");
  });

  it("deploys each host's effective files, rendered with its values", async () => {
    const first = await deploy();
    expect(first.hosts.map((host) => `${host.host} ${host.outcome}`)).toEqual(["web01 deployed", "web02 deployed", "web03 deployed"]);
    expect(await Promise.all(HOSTS.map((host) => read(host, "site.conf")))).toEqual([
      "hello from web01 on port 80",
      "hello from web02 on port 8080",
      "hello from web03 on port 80",
    ]);
    expect(await Promise.all(HOSTS.map((host) => read(host, "app.conf")))).toEqual(["shared 1", "shared 1", "web03's own"]);
    expect(await shell.run("web01", "systemctl is-active app.service")).toBe("active");
    // No template reaches a host: only what it renders to.
    expect(await shell.run("web02", "ls /var/lib/tidemark/apps/app/current")).toBe("app.conf\nmanifest.json\nrun.sh\nsite.conf\nsystemd");
  });

  it("explains where each file of a host comes from", async () => {
    const explained = await tidemark(["plan", "production", "--explain", "web03"], env);
    expect(explained.code).toBe(0);
    expect(explained.stdout.split("\n").slice(1)).toEqual([
      "  app/app.conf             ← web03",
      "  app/manifest.json        ← _all",
      "  app/run.sh               ← _all",
      "  app/site.conf            ← _groups/web, rendered from site.conf.tmpl",
      "  app/systemd/app.service  ← _all",
      "",
    ]);
    const unknown = await tidemark(["plan", "production", "--explain", "db09"], env);
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toContain("db09 is not a host of production");
  });

  it("deploys a change to a shared file to the hosts that inherit it only, and its revert as a return that uploads nothing", async () => {
    expect((await tidemark(["plan", "production"], env)).stdout).toContain("production: nothing to do, every host is up to date");
    const last = JSON.parse((await tidemark(["history", "production", "--json", "--limit", "1"], env)).stdout) as Array<{ id: string }>;

    await work.commit({ "fleet/_all/app/app.conf": "shared 2\n" }, "shared 2");
    await work.push("main");
    const plan = await tidemark(["plan", "production"], env);
    expect(plan.stdout).toContain("production: 2 hosts would change");
    expect(plan.stdout).toContain("      ~ app.conf  ← _all");
    expect(plan.stdout).not.toContain("web03");
    const from = await journalCursors(bed, HOSTS);
    const changed = await deploy();
    expect(changed.hosts.map((host) => `${host.host} ${host.outcome}`)).toEqual(["web01 deployed", "web02 deployed", "web03 unchanged"]);
    expect(await sshLogins(bed, HOSTS, from)).toEqual([1, 1, 0]);
    expect(await Promise.all(HOSTS.map((host) => read(host, "app.conf")))).toEqual(["shared 2", "shared 2", "web03's own"]);

    await work.git("revert", "--no-edit", "HEAD");
    await work.push("main");
    const reverted = await deploy();
    expect(reverted.returnTo).toEqual({ id: last[0]!.id, sourceCommit: expect.any(String) as string });
    expect(reverted.hosts).toEqual([
      expect.objectContaining({ host: "web01", outcome: "deployed", uploadedBytes: 0 }),
      expect.objectContaining({ host: "web02", outcome: "deployed", uploadedBytes: 0 }),
      { host: "web03", outcome: "unchanged" },
    ]);
    expect(await Promise.all(HOSTS.map((host) => read(host, "app.conf")))).toEqual(["shared 1", "shared 1", "web03's own"]);
  });

  it("deploys a change of one host's value to that host alone", async () => {
    const yaml = await work.git("show", "HEAD:tidemark.yaml");
    await work.commit({ "tidemark.yaml": yaml.replace("vars: { port: 8080 }", "vars: { port: 8443 }") }, "web02 on 8443");
    await work.push("main");
    const changed = await deploy();
    expect(changed.hosts.map((host) => `${host.host} ${host.outcome}`)).toEqual(["web01 unchanged", "web02 deployed", "web03 unchanged"]);
    expect(await read("web02", "site.conf")).toBe("hello from web02 on port 8443");
  });
});
