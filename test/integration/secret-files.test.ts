import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { TestBed } from "../bed/bed.js";
import { WorkRepo } from "../bed/work-repo.js";
import { bedConfig, HostShell, operatorEnv } from "../helpers/host-shell.js";
import { integrationLifecycle } from "../helpers/lifecycle.js";
import { tidemark } from "../helpers/run-cli.js";

import { journalCursors, sshLogins } from "../helpers/sshd-logins.js";

/** The part of `plan --json` these tests read. */
type PlanJson = { hosts: Array<{ apps: Array<{ files: unknown[] }> }> };

const SOPS = (name: string) => readFileSync(new URL(`../fixtures/sops/${name}`, import.meta.url));
const APP = "clusters/staging/_all/app";
const RELEASE = "/var/lib/tidemark/apps/app/current";

/**
 * Secret files deployed by the CLI to two systemd hosts: an age file made
 * here with Debian's age, and a SOPS file the real sops wrote (vendored with
 * its throwaway key). The operator holds two key files, as in a rotation.
 */
describe("secret files: encrypted in git, decrypted on the hosts only", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let shell: HostShell;
  let env: NodeJS.ProcessEnv;
  let keys: string;
  let operatorRecipient: string;
  let strangerRecipient: string;
  const passwords: string[] = [];
  const commits: string[] = [];

  const owned = integrationLifecycle({ forge: () => bed?.forge });

  const age = (plain: string, recipient: string, armored: boolean) => {
    const input = join(keys, "plain");
    writeFileSync(input, plain);
    try {
      return execFileSync("age", [...(armored ? ["-a"] : []), "-r", recipient, input]);
    } finally {
      rmSync(input);
    }
  };
  const dbEnv = (password: string) => `DB_PASSWORD=${password}\n`;
  const onHosts = (line: string) => Promise.all(["web01", "web02"].map((host) => shell.run(host, line)));

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ systemdHosts: 2, forge: true }), (it) => it.down());
    work = owned.own(await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo)), (it) => it.remove());
    shell = owned.own(new HostShell(bed), (it) => it.close());
    const operator = owned.own(operatorEnv(bed), (it) => it.remove());
    keys = owned.own(mkdtempSync(join(tmpdir(), "tidemark-keys-")), (dir) => rmSync(dir, { recursive: true, force: true }));
    const keyFile = (name: string) => {
      const path = join(keys, name);
      execFileSync("age-keygen", ["-o", path], { stdio: "ignore" });
      return { path, recipient: execFileSync("age-keygen", ["-y", path], { encoding: "utf8" }).trim() };
    };
    const mine = keyFile("operator.txt");
    operatorRecipient = mine.recipient;
    strangerRecipient = keyFile("stranger.txt").recipient;
    const sopsKey = join(keys, "sops.txt");
    writeFileSync(sopsKey, SOPS("key.txt"));
    env = { ...operator.env, TIDEMARK_AGE_KEY_FILE: `${mine.path},${sopsKey}` };
    passwords.push(randomBytes(12).toString("hex"), randomBytes(12).toString("hex"));
  });

  const deploy = async (args: string[] = []) => {
    const result = await tidemark(["deploy", "staging", "--yes", ...args], env);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    return result;
  };

  it("deploys an age file as its plaintext under its name without .age, and a SOPS file under its own, 0600 root or the manifest's mode", async () => {
    commits.push(
      await work.commit(
        {
          "tidemark.yaml": bedConfig(
            bed,
            ["staging: { track: { branch: main }, tree: clusters/staging }"],
            "{ maxParallel: 2, canary: 0 }",
          ),
          [`${APP}/systemd/app.service`]: [
            "[Unit]",
            "Description=app",
            "[Service]",
            `EnvironmentFile=${RELEASE}/db.env`,
            // What the unit was started with: proof that a changed secret restarts it.
            `ExecStart=/bin/sh -c 'echo "$DB_PASSWORD" > /run/app-saw; exec sleep infinity'`,
            "",
          ].join("\n"),
          [`${APP}/manifest.json`]: JSON.stringify({
            systemd: { units_enabled: ["app.service"] },
            secrets: { "secret.enc.yaml": { mode: "0640", group: "adm" } },
          }),
          [`${APP}/db.env.age`]: age(dbEnv(passwords[0]!), operatorRecipient, true),
          [`${APP}/token.age`]: age(`token-${passwords[1]!}\n`, operatorRecipient, false),
          [`${APP}/secret.enc.yaml`]: SOPS("secret.enc.yaml"),
          [`${APP}/plain.txt`]: "not a secret\n",
        },
        "an app with secrets",
      ),
    );
    await work.push("main");

    const plan = await tidemark(["plan", "staging"], env);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/\+ db\.env {2}secret added/);
    expect(plan.stdout).toMatch(/\+ secret\.enc\.yaml {2}secret added/);
    expect(plan.stdout).toMatch(/\+ plain\.txt(?! {2}secret)/);
    const json = await tidemark(["plan", "staging", "--json"], env);
    expect((JSON.parse(json.stdout) as PlanJson).hosts[0]!.apps[0]!.files).toContainEqual({
      path: "db.env",
      change: "added",
      secret: true,
      layer: "_all",
    });
    for (const text of [plan.stdout, json.stdout])
      for (const secret of [...passwords, "this is a secret"]) expect(text).not.toContain(secret);

    const deployed = await deploy();
    for (const secret of [...passwords, "this is a secret"]) expect(deployed.stdout + deployed.stderr).not.toContain(secret);
    expect(await onHosts(`cat ${RELEASE}/db.env; stat -c '%a %U %G %h' ${RELEASE}/db.env`)).toEqual(
      Array(2).fill(`${dbEnv(passwords[0]!)}600 root root 1`),
    );
    expect(await onHosts(`cat ${RELEASE}/token; stat -c '%a %U %G' ${RELEASE}/token`)).toEqual(
      Array(2).fill(`token-${passwords[1]!}\n600 root root`),
    );
    const yaml = await onHosts(`cat ${RELEASE}/secret.enc.yaml`);
    expect(yaml.map((text) => parse(text) as unknown)).toEqual(Array(2).fill({ secret: "this is a secret" }));
    expect(await onHosts(`stat -c '%a %U %G' ${RELEASE}/secret.enc.yaml ${RELEASE}/plain.txt; ls ${RELEASE}`)).toEqual(
      Array(2).fill("640 root adm\n444 root root\ndb.env\nmanifest.json\nplain.txt\nsecret.enc.yaml\nsystemd\ntoken"),
    );
    expect(await onHosts("cat /run/app-saw")).toEqual(Array(2).fill(passwords[0]));
  });

  it("a changed secret is a new file, never a hard link into the old release, and restarts the unit", async () => {
    commits.push(await work.commit({ [`${APP}/db.env.age`]: age(dbEnv(passwords[1]!), operatorRecipient, true) }, "rotate the password"));
    await work.push("main");
    const plan = await tidemark(["plan", "staging"], env);
    expect(plan.stdout).toMatch(/~ db\.env {2}secret changed/);
    await deploy();
    expect(await onHosts(`cat ${RELEASE}/db.env; stat -c '%a %U %G %h' ${RELEASE}/db.env; cat /run/app-saw`)).toEqual(
      Array(2).fill(`${dbEnv(passwords[1]!)}600 root root 1\n${passwords[1]!}`),
    );
    // The release before keeps its own file, and its own copy of the unchanged secrets: no inode is shared.
    expect(await onHosts("cat /var/lib/tidemark/apps/app/previous/db.env; stat -c %h /var/lib/tidemark/apps/app/previous/token")).toEqual(
      Array(2).fill(`${dbEnv(passwords[0]!)}1`),
    );
  });

  it("a file the operator cannot open fails validate, plan and deploy naming it, before any host is contacted", async () => {
    const yaml = SOPS("secret.enc.yaml").toString();
    const cases: Array<[string, Record<string, string | Buffer>, RegExp]> = [
      [
        "a changed SOPS value",
        { [`${APP}/secret.enc.yaml`]: yaml.replace("data:hxKQomzJ", "data:hxKQomzK") },
        /secret\.enc\.yaml: secret: a value does not decrypt/,
      ],
      [
        "a changed SOPS MAC",
        { [`${APP}/secret.enc.yaml`]: yaml.replace("mac: ENC[AES256_GCM,data:kHA6", "mac: ENC[AES256_GCM,data:kHA7") },
        /secret\.enc\.yaml: its MAC does not decrypt/,
      ],
      [
        "an age file for another identity",
        { [`${APP}/db.env.age`]: age(dbEnv("x"), strangerRecipient, false) },
        /db\.env\.age: no identity matched any of the file's recipients/,
      ],
    ];
    const cursors = await journalCursors(bed, ["web01", "web02"]);
    for (const [name, files, why] of cases) {
      await work.git("checkout", "--quiet", "-B", "bad", "main");
      await work.commit(files, name);
      await work.push("--force", "bad");
      for (const command of [["validate"], ["plan", "staging"], ["deploy", "staging", "--yes"]]) {
        const result = await tidemark([...command, "--ref", "bad"], env);
        expect({ name, command, code: result.code }).toEqual({ name, command, code: 2 });
        const said = result.stdout + result.stderr;
        expect(said, `${name}: tidemark ${command.join(" ")}`).toMatch(new RegExp(`cannot decrypt ${APP}/${why.source}`));
        for (const secret of [...passwords, "this is a secret"]) expect(said).not.toContain(secret);
      }
    }
    await work.git("checkout", "--quiet", "main");
    expect(await sshLogins(bed, ["web01", "web02"], cursors)).toEqual([0, 0]);
    expect(await onHosts(`cat ${RELEASE}/db.env`)).toEqual(Array(2).fill(dbEnv(passwords[1]!).trim()));
  });

  it("a revert and tidemark rollback put the secrets back as they were", async () => {
    await work.git("revert", "--no-edit", "HEAD");
    await work.push("main");
    await deploy();
    expect(await onHosts(`cat ${RELEASE}/db.env; stat -c '%a %U %G' ${RELEASE}/db.env; cat /run/app-saw`)).toEqual(
      Array(2).fill(`${dbEnv(passwords[0]!)}600 root root\n${passwords[0]!}`),
    );
    const back = await tidemark(["rollback", "staging", commits[1]!, "--yes"], env);
    expect(back.code, back.stderr).toBe(0);
    expect(await onHosts(`cat ${RELEASE}/db.env; stat -c '%a %U %G' ${RELEASE}/db.env; cat /run/app-saw`)).toEqual(
      Array(2).fill(`${dbEnv(passwords[1]!)}600 root root\n${passwords[1]!}`),
    );
    expect(await onHosts(`cat ${RELEASE}/secret.enc.yaml; stat -c '%a %G' ${RELEASE}/secret.enc.yaml`)).toEqual(
      Array(2).fill("secret: this is a secret\n640 adm"),
    );
  });

  it("tidemark secrets check names the files the operator cannot open and those still encrypted to a retired recipient", async () => {
    const ok = await tidemark(["secrets", "check"], env);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`✓ ${APP}/secret.enc.yaml  yaml, 3 recipients`);
    expect(ok.stdout).toContain(`✓ ${APP}/db.env.age  age, recipients not named (age)`);

    const sopsRecipient = /recipient: (age1[0-9a-z]{58})/.exec(SOPS("secret.enc.yaml").toString())![1]!;
    await work.git("checkout", "--quiet", "-B", "retire", "main");
    const config = readFileSync(join(work.dir, "tidemark.yaml"), "utf8");
    await work.commit(
      {
        "tidemark.yaml": `${config}secrets:\n  retired:\n    - ${sopsRecipient}\n`,
        [`${APP}/token.age`]: age("t\n", strangerRecipient, true),
      },
      "retire a recipient; a token for someone else",
    );
    await work.push("--force", "retire");
    await work.git("checkout", "--quiet", "main");
    const bad = await tidemark(["secrets", "check", "--ref", "retire", "--json"], env);
    expect(bad.code).toBe(2);
    const report = JSON.parse(bad.stdout) as { ok: boolean; files: Array<{ file: string; cannotDecrypt?: string; retired: string[] }> };
    expect(report.ok).toBe(false);
    expect(report.files.map(({ file, cannotDecrypt, retired }) => [file, cannotDecrypt !== undefined, retired])).toEqual([
      [`${APP}/db.env.age`, false, []],
      [`${APP}/secret.enc.yaml`, false, [sopsRecipient]],
      [`${APP}/token.age`, true, []],
    ]);
  });
});
