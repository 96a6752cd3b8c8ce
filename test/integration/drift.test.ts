import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import { WorkRepo } from "../bed/work-repo.js";
import { bedConfig, HostShell, operatorEnv } from "../helpers/host-shell.js";
import { integrationLifecycle } from "../helpers/lifecycle.js";
import { tidemark } from "../helpers/run-cli.js";
import { journalCursors, sshLogins } from "../helpers/sshd-logins.js";

const HOSTS = ["web01", "web02"];
const APP = "clusters/staging/_all/app";
const APP_DIR = "/var/lib/tidemark/apps/app";
const CURRENT = `${APP_DIR}/current`;

type DriftJson = {
  schema: string;
  hosts: Array<{ host: string; state: string; findings: Array<{ kind: string; path: string }>; detail?: string }>;
};

/**
 * `tidemark drift` on two systemd hosts: an app with a unit, a manifest
 * symlink and an age secret is deployed by the CLI, changed by hand on the
 * hosts the way people do, and checked.
 */
describe("drift: what changed on a host behind Tidemark's back", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let shell: HostShell;
  let env: NodeJS.ProcessEnv;
  let recipient: string;
  let keys: string;
  const password = randomBytes(12).toString("hex");

  const owned = integrationLifecycle({ forge: () => bed?.forge });

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ systemdHosts: 2, forge: true }), (it) => it.down());
    work = owned.own(await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo)), (it) => it.remove());
    shell = owned.own(new HostShell(bed), (it) => it.close());
    const operator = owned.own(operatorEnv(bed), (it) => it.remove());
    keys = owned.own(mkdtempSync(join(tmpdir(), "tidemark-keys-")), (dir) => rmSync(dir, { recursive: true, force: true }));
    const key = join(keys, "operator.txt");
    execFileSync("age-keygen", ["-o", key], { stdio: "ignore" });
    recipient = execFileSync("age-keygen", ["-y", key], { encoding: "utf8" }).trim();
    env = { ...operator.env, TIDEMARK_AGE_KEY_FILE: key };
  });

  const age = (plain: string) => {
    const input = join(keys, "plain");
    writeFileSync(input, plain);
    try {
      return execFileSync("age", ["-r", recipient, input]);
    } finally {
      rmSync(input);
    }
  };

  async function deploy(version: string) {
    await work.commit(
      {
        "tidemark.yaml": bedConfig(
          bed,
          ["staging: { track: { branch: main }, tree: clusters/staging, drift: { ignore: ['app/cache/**'] } }"],
          "{ maxParallel: 2, canary: 0 }",
        ),
        [`${APP}/systemd/app.service`]: `[Unit]\nDescription=app\n[Service]\nExecStart=/bin/sh ${CURRENT}/run.sh\n`,
        [`${APP}/run.sh`]: "exec sleep infinity\n",
        [`${APP}/version`]: `${version}\n`,
        [`${APP}/conf/site.conf`]: "listen 80;\n",
        [`${APP}/extra.txt`]: "extra\n",
        [`${APP}/cache/.keep`]: "",
        [`${APP}/db.env.age`]: age(`DB_PASSWORD=${password}\n`),
        [`${APP}/manifest.json`]: JSON.stringify({
          systemd: { units_enabled: ["app.service"] },
          symlinks: { "/etc/app/site.conf": "conf/site.conf" },
        }),
      },
      version,
    );
    await work.push("main");
    const result = await tidemark(["deploy", "staging", "--yes"], env);
    expect(result, result.stderr).toMatchObject({ code: 0 });
  }

  const drift = async (...args: string[]) => {
    const result = await tidemark(["drift", "staging", "--json", ...args], env);
    const json = JSON.parse(result.stdout || "{}") as DriftJson;
    return {
      code: result.code,
      stderr: result.stderr,
      stdout: result.stdout,
      json,
      host: (name: string) => json.hosts.find((h) => h.host === name),
    };
  };

  it("a fleet as deployed is clean: exit 0, with and without --deep, one SSH login per host", async () => {
    await deploy("v1");
    await deploy("v2");
    const cursors = await journalCursors(bed, HOSTS);
    const clean = await drift();
    expect(clean.code, `${clean.stdout}${clean.stderr}`).toBe(0);
    expect(clean.json.schema).toBe("tidemark.drift/v1");
    expect(clean.json.hosts.map(({ host, state, findings }) => ({ host, state, findings }))).toEqual(
      HOSTS.map((host) => ({ host, state: "clean", findings: [] })),
    );
    expect(await sshLogins(bed, HOSTS, cursors)).toEqual([1, 1]);
    const deep = await drift("--deep");
    expect(deep.code, deep.stderr).toBe(0);
    const text = await tidemark(["drift", "staging"], env);
    expect(text.stdout).toContain("staging: no drift");
  });

  it("each change made by hand is reported with its kind and path; ignored paths are not; a secret's content never shows", async () => {
    const release = await shell.run("web02", `readlink ${CURRENT}`);
    const dir = `${APP_DIR}/${release}`;
    const changed = `changed-${randomBytes(6).toString("hex")}`;
    await shell.run(
      "web02",
      [
        // An edit as root: write access first, then put the mode back, so only the content differs.
        `chmod u+w ${dir}/version && echo edited > ${dir}/version && chmod u-w ${dir}/version`,
        // A secret is 0600: root writes it as it is.
        `echo 'DB_PASSWORD=${changed}' > ${dir}/db.env`,
        `chmod 0644 ${dir}/conf/site.conf`,
        `chown 1:1 ${dir}/run.sh`,
        `rm -f ${dir}/extra.txt`,
        `echo new > ${dir}/new.txt`,
        `echo junk > ${dir}/cache/junk`,
        `rm /etc/app/site.conf && echo local > /etc/app/site.conf`,
        "systemctl disable --quiet app.service",
      ].join(" && "),
    );
    const previous = await shell.run("web01", `readlink ${APP_DIR}/previous`);
    await shell.run("web01", `ln -sfn ${previous} ${CURRENT} && systemctl stop app.service`);

    const found = await drift();
    expect(found.code, found.stderr).toBe(5);
    expect(found.host("web02")).toEqual({
      host: "web02",
      state: "drift",
      findings: [
        { kind: "link", path: "/etc/app/site.conf" },
        // systemctl disable removes the unit file's link too.
        { kind: "link", path: "/etc/systemd/system/app.service" },
        { kind: "unit-disabled", path: "app.service" },
        { kind: "mode", path: "app/conf/site.conf" },
        { kind: "modified", path: "app/db.env" },
        { kind: "removed", path: "app/extra.txt" },
        { kind: "added", path: "app/new.txt" },
        { kind: "owner", path: "app/run.sh" },
        { kind: "modified", path: "app/version" },
      ],
    });
    expect(found.host("web01")).toEqual({
      host: "web01",
      state: "drift",
      findings: [
        { kind: "link", path: CURRENT },
        { kind: "unit-inactive", path: "app.service" },
      ],
    });
    const text = await tidemark(["drift", "staging", "--deep"], env);
    expect(text.code).toBe(5);
    expect(text.stdout).toMatch(/web02\s+drift/);
    for (const output of [found.stdout, found.stderr, text.stdout, text.stderr]) {
      expect(output).not.toContain(changed);
      expect(output).not.toContain(password);
    }

    const one = await drift("--host", "web01");
    expect(one.json.hosts.map((host) => host.host)).toEqual(["web01"]);
    const unknown = await tidemark(["drift", "staging", "--host", "web09"], env);
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toContain("web09: no release of staging is recorded");
  });

  it("a revert onto a release dir edited by hand never activates the edit: the dir is built again from git", async () => {
    const v1 = await shell.run("web02", `readlink ${APP_DIR}/previous`);
    const tampered = `tampered-${randomBytes(6).toString("hex")}`;
    await shell.run("web02", `chmod u+w ${APP_DIR}/${v1}/version && echo ${tampered} > ${APP_DIR}/${v1}/version`);
    await work.git("revert", "--no-edit", "HEAD");
    await work.push("main");
    const result = await tidemark(["deploy", "staging", "--yes", "--json"], env);
    expect(result.code, result.stderr).toBe(0);
    const hosts = (JSON.parse(result.stdout) as { hosts: Array<{ host: string; outcome: string; detail?: string }> }).hosts;
    const detail = hosts.find((host) => host.host === "web02")?.detail ?? "";
    expect(detail).toContain(`rebuilt app's release ${v1.slice(0, 7)} from git: the dir on the host had changed since it went live (`);
    expect(detail).toContain("app/version modified");
    expect(hosts.find((host) => host.host === "web01")?.detail ?? "").not.toContain("rebuilt");
    for (const host of HOSTS) {
      expect(await shell.run(host, `readlink ${CURRENT}`)).toBe(v1);
      expect(await shell.run(host, `cat ${CURRENT}/version`)).toBe("v1");
    }
    // What the revert brought back is as git has it: web01 reused its dir, web02's is new; neither drifts in its files.
    const after = await drift("--deep");
    expect(after.host("web01"), after.stdout).toMatchObject({ state: "clean" });
    expect(after.host("web02")?.findings.filter((finding) => finding.path.startsWith("app/"))).toEqual([]);
  });

  it("a host whose lock a deployment holds is not checked: busy, exit 3, and the lock is never taken by the check", async () => {
    await shell.run("web01", "systemd-run --quiet --unit=hold-lock flock /var/lib/tidemark/lock sleep 60");
    try {
      const busy = await drift("--host", "web01");
      expect(busy.code, busy.stderr).toBe(3);
      expect(busy.host("web01")).toMatchObject({ state: "busy" });
    } finally {
      await shell.run("web01", "systemctl stop hold-lock");
    }
  });
});
