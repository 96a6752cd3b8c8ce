import { existsSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lockCommand } from "../../src/remote/commands.js";
import { SshSession } from "../../src/remote/ssh-session.js";
import { command } from "../../src/remote/shell.js";
import { TestBed } from "../bed/bed.js";
import { WorkRepo } from "../bed/work-repo.js";
import { HostShell, operatorEnv } from "../helpers/host-shell.js";
import { tidemark } from "../helpers/run-cli.js";

interface DeploymentJson {
  id: string;
  hosts: Array<{ host: string; outcome: string; detail?: string; log?: string }>;
}

// Names cannot hold '/', so the injections write "pwned" files wherever a shell would run them.
const ODD_APP = "-odd app $(touch pwned) 'q'";
const ODD_FILE = '$(touch pwned) `touch pwned-too` "x".txt';

/** A service that runs the app's run.sh from its current release. */
const service = (app: string) =>
  `[Unit]\nDescription=${app}\n\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/${app}/current/run.sh\n`;
const hello = (version: string, run = "exec sleep infinity") => ({
  "hello/systemd/hello.service": service("hello"),
  "hello/manifest.json": JSON.stringify({
    systemd: { units_enabled: ["hello.service"] },
    symlinks: { "/etc/hello/version": "version" },
    checks: [{ command: "test -s version" }],
  }),
  "hello/run.sh": `${run}\n`,
  "hello/version": `${version}\n`,
  "hello/static/page.html": "<p>the same in every version</p>\n",
});

describe("tidemark deploy on systemd hosts", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let shell: HostShell;
  let operator: ReturnType<typeof operatorEnv>;
  let env: NodeJS.ProcessEnv;
  const sessions: SshSession[] = [];

  const config = (overrides: Record<string, string> = {}, extra: string[] = []) => {
    const hosts = [
      ...bed.hosts.map(
        (host) =>
          `  ${host.name}: { address: ${host.address}, port: ${host.port}, user: root, hostKey: "${overrides[host.name] ?? host.hostKey}" }`,
      ),
      ...extra,
    ];
    return [
      "environments:",
      "  staging: { track: { branch: main }, tree: clusters/staging }",
      "hosts:",
      ...hosts,
      "rollout: { maxParallel: 10, canary: 0, maxFailures: 10 }",
      "",
    ].join("\n");
  };
  /** Files for every host of staging, the same app on each unless overridden. */
  const tree = (files: Record<string, string>, only?: string) =>
    Object.fromEntries(
      bed.hosts
        .filter((host) => !only || host.name === only)
        .flatMap((host) => Object.entries(files).map(([path, content]) => [`clusters/staging/${host.name}/${path}`, content])),
    );

  async function deploy(...args: string[]): Promise<{ code: number; deployment: DeploymentJson; stderr: string }> {
    const result = await tidemark(["deploy", "staging", "--yes", "--json", "--settle", "0.5", ...args], env);
    if (!result.stdout.trim().startsWith("{")) throw new Error(`deploy printed no JSON (exit ${result.code}):\n${result.stderr}`);
    return { code: result.code, deployment: JSON.parse(result.stdout) as DeploymentJson, stderr: result.stderr };
  }
  const outcomes = (deployment: DeploymentJson) => Object.fromEntries(deployment.hosts.map((host) => [host.host, host.outcome]));

  const sh = (host: string, line: string) => shell.run(host, line);

  beforeAll(async () => {
    bed = await TestBed.up({ systemdHosts: 3, forge: true });
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    shell = new HostShell(bed);
    operator = operatorEnv(bed);
    env = operator.env;
  });

  afterAll(async () => {
    for (const session of sessions) session.close();
    shell?.close();
    work?.remove();
    operator?.remove();
    await bed?.down();
  });

  it("returns a host whose first deployment fails to empty, with no unit left enabled, while the others deploy", async () => {
    await work.commit({ "tidemark.yaml": config(), ...tree(hello("1")), ...tree(hello("1", "exit 1"), "web03") }, "first");
    await work.push("main");
    const { code, deployment } = await deploy();
    expect(outcomes(deployment)).toEqual({ web01: "deployed", web02: "deployed", web03: "rolled-back" });
    expect(code).toBe(1);
    const web03 = deployment.hosts.find((host) => host.host === "web03")!;
    expect(web03.detail).toContain("hello.service failed (exit-code)");
    expect(web03.detail).toContain("the host is empty again");
    expect(
      await sh(
        "web03",
        "ls -A /var/lib/tidemark/apps; systemctl is-enabled hello.service 2>/dev/null || echo not-enabled; test -e /etc/hello/version || echo no-link",
      ),
    ).toBe("not-enabled\nno-link");
    expect(await sh("web01", "systemctl is-active hello.service; cat /etc/hello/version")).toBe("active\n1");
  });

  it("deploys to every host, uploads only what changed, and a second run touches and records nothing", async () => {
    await work.commit({ ...tree(hello("2")) }, "two");
    await work.push("main");
    const before = await sh("web01", "readlink /var/lib/tidemark/apps/hello/current");
    const { code, deployment } = await deploy();
    expect(outcomes(deployment)).toEqual({ web01: "deployed", web02: "deployed", web03: "deployed" });
    expect(code).toBe(0);
    for (const host of ["web01", "web02", "web03"]) {
      expect(await sh(host, "systemctl is-active hello.service; cat /etc/hello/version /var/lib/tidemark/apps/hello/current/version")).toBe(
        "active\n2\n2",
      );
    }
    // web01 had release 1: the unchanged file is a hard link to it; the new release is read-only.
    const release = await sh("web01", "readlink /var/lib/tidemark/apps/hello/current");
    expect(await sh("web01", "readlink /var/lib/tidemark/apps/hello/previous")).toBe(before);
    expect(await sh("web01", `stat -c %h ${command(`/var/lib/tidemark/apps/hello/${release}/static/page.html`)}`)).toBe("2");
    expect(await sh("web01", `stat -c %A /var/lib/tidemark/apps/hello/${release} /var/lib/tidemark/apps/hello/${release}/version`)).toBe(
      "dr-xr-xr-x\n-r--r--r--",
    );
    const [id, treeOid] = (await sh("web01", "cat /var/lib/tidemark/current")).split(" ");
    expect(id).toBe(deployment.id);
    expect(await sh("web01", "cat /var/lib/tidemark/target")).toBe(`${id} ${treeOid}`);

    const logins = async () =>
      Promise.all(["web01", "web02", "web03"].map((host) => sh(host, "journalctl -u ssh -o cat | grep -c 'Accepted publickey' || true")));
    const counted = await logins();
    const recorded = (await tidemark(["history", "staging", "--json"], env)).stdout;
    const again = await deploy();
    expect(again.code).toBe(0);
    expect(outcomes(again.deployment)).toEqual({ web01: "unchanged", web02: "unchanged", web03: "unchanged" });
    // No change is no deployment (issue 18): nothing recorded, said as such to scripts.
    expect(again.deployment).toMatchObject({ schema: "tidemark.no-change/v1", environment: "staging" });
    expect((await tidemark(["history", "staging", "--json"], env)).stdout).toBe(recorded);
    // Only the counting sessions themselves logged in again (they were already open): no deployment connection.
    expect(await logins()).toEqual(counted);
  });

  it("builds a release whole when its base is gone from the host, with the directories the plan left unread", async () => {
    // static/ is the same on both sides of the plan, so the plan never read it: the upload must.
    await sh("web02", 'cd /var/lib/tidemark/apps/hello && r=$(readlink current) && chmod -R u+w -- "$r" && rm -rf -- "$r"');
    await work.commit({ ...tree({ ...hello("2"), "hello/notes.txt": "version 2, and a note\n" }) }, "two, and a note");
    await work.push("main");
    const { code, deployment } = await deploy();
    expect(code).toBe(0);
    expect(outcomes(deployment)).toEqual({ web01: "deployed", web02: "deployed", web03: "deployed" });
    const files = (host: string) => sh(host, "cd /var/lib/tidemark/apps/hello/current && find . -type f | sort && cat static/page.html");
    expect(await files("web02")).toContain("./static/page.html");
    expect(await files("web02")).toBe(await files("web01"));
  });

  it("rolls back only the host whose unit fails, names the unit, and shows it pending in status", async () => {
    const good = await sh("web02", "readlink /var/lib/tidemark/apps/hello/current");
    await work.commit(
      { ...tree(hello("3")), ...tree(hello("3", "echo 'hello: cannot start' >&2; exit 3"), "web02") },
      "three, broken on web02",
    );
    await work.push("main");
    const { code, deployment } = await deploy();
    expect(code).toBe(1);
    expect(outcomes(deployment)).toEqual({ web01: "deployed", web02: "rolled-back", web03: "deployed" });
    const web02 = deployment.hosts.find((host) => host.host === "web02")!;
    expect(web02.detail).toMatch(/hello\.service failed \(exit-code\); rolled back to [0-9a-f]{7}/);
    expect(web02.log).toContain("hello: cannot start");
    expect(
      await sh("web02", "readlink /var/lib/tidemark/apps/hello/current; systemctl is-active hello.service; cat /etc/hello/version"),
    ).toBe(`${good}\nactive\n2`);
    expect(await sh("web01", "cat /etc/hello/version")).toBe("3");

    const status = await tidemark(["status", "staging", "--json"], env);
    const hosts = JSON.parse(status.stdout) as { hosts: Array<{ host: string; pending: boolean }> };
    expect(hosts.hosts.map((host) => [host.host, host.pending])).toEqual([
      ["web01", false],
      ["web02", true],
      ["web03", false],
    ]);
  });

  it("reports a rollback that fails too as rollback-failed, never as success", async () => {
    // web01's running release needs /etc/hello/ok to start; without it the rollback's restart fails as well.
    await work.commit({ ...tree(hello("4", "test -e /etc/hello-ok || exit 4; exec sleep infinity")) }, "four, needs /etc/hello-ok");
    await work.push("main");
    await sh("web01", "touch /etc/hello-ok");
    await sh("web02", "touch /etc/hello-ok");
    await sh("web03", "touch /etc/hello-ok");
    expect(outcomes((await deploy()).deployment)).toEqual({ web01: "deployed", web02: "deployed", web03: "deployed" });
    await sh("web01", "rm /etc/hello-ok");
    await work.commit({ ...tree(hello("5", "exit 5"), "web01") }, "five, broken");
    await work.push("main");
    const { code, deployment } = await deploy();
    expect(code).toBe(1);
    const web01 = deployment.hosts.find((host) => host.host === "web01")!;
    expect(web01.outcome).toBe("rollback-failed");
    expect(web01.detail).toMatch(/hello\.service failed \(exit-code\); the rollback failed too: hello\.service failed \(exit-code\)/);
    await sh("web01", "touch /etc/hello-ok");
  });

  it("deploys names with spaces, quotes, $(...) and a leading '-' as plain data", async () => {
    await work.commit({ ...tree({ [`${ODD_APP}/${ODD_FILE}`]: "odd\n", [`${ODD_APP}/ spaced/-dash`]: "dash\n" }, "web02") }, "odd names");
    await work.push("main");
    const { deployment } = await deploy();
    expect(outcomes(deployment).web02).toBe("deployed");
    const dir = `/var/lib/tidemark/apps/${ODD_APP}/current`;
    expect(await sh("web02", `cat -- ${command(`${dir}/${ODD_FILE}`)} ${command(`${dir}/ spaced/-dash`)}`)).toBe("odd\ndash");
    expect(await sh("web02", "find / -xdev -name 'pwned*' -print")).toBe("");
    expect(existsSync(join(process.cwd(), "pwned"))).toBe(false);
  });

  it("refuses a changed host key and a locked host, each with a clear outcome, and proceeds with the others", async () => {
    await work.commit(
      { "tidemark.yaml": config({ web02: bed.host("web03").hostKey }), ...tree(hello("6", "exec sleep infinity")) },
      "six, web02's key wrong",
    );
    await work.push("main");
    const holder = await SshSession.connect(bed.host("web03"), { privateKey: bed.clientKey });
    sessions.push(holder);
    expect(await holder.hold(lockCommand("root", "a person's test"), "locked")).toEqual({ held: true });
    const { code, deployment } = await deploy();
    expect(code).toBe(3);
    expect(outcomes(deployment)).toEqual({ web01: "deployed", web02: "unreachable", web03: "unreachable" });
    const [, web02, web03] = deployment.hosts;
    expect(web02!.detail).toContain(`offered host key ${bed.host("web02").hostKey.split(" ").slice(0, 2).join(" ")}`);
    expect(web03!.detail).toContain("locked: another deployment is running on web03 (a person's test)");
    expect(await sh("web02", "cat /etc/hello/version")).not.toBe("6");
    expect(await sh("web03", "cat /etc/hello/version")).not.toBe("6");

    // The lock goes with the session that held it.
    holder.close();
    await work.commit({ "tidemark.yaml": config() }, "keys right again");
    await work.push("main");
    const retry = await deploy();
    expect(outcomes(retry.deployment)).toEqual({ web01: "unchanged", web02: "deployed", web03: "deployed" });
  });

  it("reports a host that is down as unreachable, with what to check, and deploys the others", async () => {
    const closed = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const gone = `  gone: { address: 127.0.0.1, port: ${closed}, hostKey: "${bed.host("web01").hostKey}" }`;
    await work.commit(
      { "tidemark.yaml": config({}, [gone]), ...tree(hello("7")), "clusters/staging/gone/hello/version": "7\n" },
      "seven, with a host that is down",
    );
    await work.push("main");
    const { code, deployment } = await deploy();
    expect(code).toBe(3);
    expect(outcomes(deployment)).toEqual({ gone: "unreachable", web01: "deployed", web02: "deployed", web03: "deployed" });
    const down = deployment.hosts.find((host) => host.host === "gone")!;
    expect(down.detail).toContain("ECONNREFUSED");
    expect(down.detail).toContain("check that the host is up");
  });

  it("deploys as a user with passwordless sudo, leaving releases owned by root", async () => {
    await sh(
      "web02",
      [
        "useradd --create-home deployer",
        "install -d -m 700 -o deployer /home/deployer/.ssh",
        "install -m 600 -o deployer /root/.ssh/authorized_keys /home/deployer/.ssh/authorized_keys",
        "echo 'deployer ALL=(root) NOPASSWD: ALL' > /etc/sudoers.d/deployer",
      ].join(" && "),
    );
    const asDeployer = config().replace(/(web02: \{ address: [^,]+, port: \d+, user: )root/, "$1deployer");
    expect(asDeployer).toContain("user: deployer");
    await work.commit(
      { "tidemark.yaml": asDeployer, ...tree(hello("8")), "clusters/staging/gone/hello/version": null },
      "eight, web02 as deployer, the host that was down gone",
    );
    await work.push("main");
    const { deployment } = await deploy();
    const web02 = deployment.hosts.find((host) => host.host === "web02")!;
    expect(`${web02.outcome} ${web02.detail ?? ""}`.trim()).toBe("deployed");
    expect(await sh("web02", "cat /etc/hello/version; systemctl is-active hello.service")).toBe("8\nactive");
    const release = await sh("web02", "readlink /var/lib/tidemark/apps/hello/current");
    expect(await sh("web02", `find /var/lib/tidemark/apps/hello/${release} ! -user root -print`)).toBe("");
  });
});
