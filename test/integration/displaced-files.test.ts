import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import { WorkRepo } from "../bed/work-repo.js";
import { HostShell, operatorEnv } from "../helpers/host-shell.js";
import { tidemark } from "../helpers/run-cli.js";

interface DeploymentJson {
  hosts: Array<{ host: string; outcome: string; detail?: string }>;
}

const PATH = "/etc/displaced-demo.conf";
/** What the host had at PATH before Tidemark: content, mode, owner, group and modification time all count. */
const FINGERPRINT = `sha256sum ${PATH} | cut -d' ' -f1; stat -c '%F %a %U %G %Y' ${PATH}`;

const demo = (version: string, { link = true, run = "exec sleep infinity" } = {}) => ({
  "clusters/staging/web01/demo/systemd/demo.service":
    "[Unit]\nDescription=demo\n\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/demo/current/run.sh\n",
  "clusters/staging/web01/demo/manifest.json": JSON.stringify({
    systemd: { units_enabled: ["demo.service"] },
    ...(link ? { symlinks: { [PATH]: "demo.conf" } } : {}),
  }),
  "clusters/staging/web01/demo/run.sh": `${run}\n`,
  "clusters/staging/web01/demo/demo.conf": `tidemark ${version}\n`,
});
const removed = (files: Record<string, string>) => Object.fromEntries(Object.keys(files).map((path) => [path, null]));

describe("a file that a manifest symlink displaces is kept on the host and put back", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let shell: HostShell;
  let operator: ReturnType<typeof operatorEnv>;
  let original: string;

  const sh = (line: string) => shell.run("web01", line);
  async function deploy(command: "deploy" | "rollback" = "deploy"): Promise<Record<string, string>> {
    const result = await tidemark([command, "staging", "--yes", "--json", "--settle", "0.3"], operator.env);
    if (!result.stdout.trim().startsWith("{")) throw new Error(`${command} printed no JSON (exit ${result.code}):\n${result.stderr}`);
    const deployment = JSON.parse(result.stdout) as DeploymentJson;
    return Object.fromEntries(deployment.hosts.map((host) => [host.host, `${host.outcome}${host.detail ? `: ${host.detail}` : ""}`]));
  }
  const commit = async (files: Record<string, string | null>, message: string) => {
    await work.commit(files, message);
    await work.push("main");
  };

  beforeAll(async () => {
    bed = await TestBed.up({ systemdHosts: 1, forge: true });
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    shell = new HostShell(bed);
    operator = operatorEnv(bed);
    const web01 = bed.host("web01");
    await commit(
      {
        "tidemark.yaml": [
          "environments:",
          "  staging: { track: { branch: main }, tree: clusters/staging }",
          "hosts:",
          `  web01: { address: ${web01.address}, port: ${web01.port}, user: root, hostKey: "${web01.hostKey}" }`,
          "",
        ].join("\n"),
        "clusters/staging/web01/motd/motd": "hello\n",
      },
      "inventory and an app that stays",
    );
    // A file as a distribution's package would leave it: not root's, not world-readable, old.
    await sh(
      `printf 'from the package\\n' > ${PATH} && chown daemon:daemon ${PATH} && chmod 0640 ${PATH} && touch -d '2020-02-02 02:02:02' ${PATH}`,
    );
    original = await sh(FINGERPRINT);
    expect(original).toMatch(/^[0-9a-f]{64}\nregular file 640 daemon daemon 1580608922$/);
  });

  afterAll(async () => {
    shell?.close();
    work?.remove();
    operator?.remove();
    await bed?.down();
  });

  it("(a) a first deployment that links the path and fails leaves the file exactly as it was", async () => {
    await commit(demo("1", { run: "exit 1" }), "a broken first deployment");
    const plan = await tidemark(["plan", "staging"], operator.env);
    expect(plan.stdout).toContain(`takes over ${PATH} (what is there now is kept on the host, and put back when the link goes)`);

    const outcomes = await deploy();
    expect(outcomes.web01).toMatch(/^rolled-back: demo\.service failed \(exit-code\); the host is empty again$/);
    expect(await sh(FINGERPRINT)).toBe(original);
    expect(await sh("ls -A /var/lib/tidemark/apps; test -e /var/lib/tidemark/displaced || echo nothing-kept")).toBe("nothing-kept");
  });

  it("(b) a good deployment links the path; a commit that removes the app puts the file back", async () => {
    await commit(demo("2"), "a good deployment");
    expect((await deploy()).web01).toBe("deployed");
    expect(await sh(`readlink ${PATH}; cat ${PATH}`)).toBe("/var/lib/tidemark/apps/demo/current/demo.conf\ntidemark 2");
    // What was there waits in Tidemark's own place, untouched.
    expect(await sh(`stat -c '%a %U' /var/lib/tidemark/displaced; cat /var/lib/tidemark/displaced${PATH}`)).toBe(
      "700 root\nfrom the package",
    );

    await commit(removed(demo("2")), "the app leaves the host");
    expect((await deploy()).web01).toBe("deployed");
    expect(await sh(FINGERPRINT)).toBe(original);
    expect(await sh("systemctl is-enabled demo.service 2>/dev/null || echo not-enabled")).toBe("not-enabled");
  });

  it("(c) a later deployment that links the path may fail and roll back, and tidemark rollback across it puts the file back", async () => {
    await commit(demo("3", { link: false }), "the app, not linking the path yet");
    expect((await deploy()).web01).toBe("deployed");
    expect(await sh(FINGERPRINT)).toBe(original);

    // Rollback is not refused because the deployment takes a path over: the host goes back and the file with it.
    await commit(demo("4", { run: "exit 1" }), "links the path, broken");
    expect((await deploy()).web01).toMatch(/^rolled-back: demo\.service failed \(exit-code\); rolled back to [0-9a-f]{7}$/);
    expect(await sh(FINGERPRINT)).toBe(original);

    await commit(demo("5"), "links the path");
    expect((await deploy()).web01).toBe("deployed");
    expect(await sh(`cat ${PATH}`)).toBe("tidemark 5");

    expect((await deploy("rollback")).web01).toBe("deployed");
    expect(await sh(FINGERPRINT)).toBe(original);
    expect(await sh("cat /var/lib/tidemark/apps/demo/current/demo.conf; systemctl is-active demo.service")).toBe("tidemark 3\nactive");
  });
});
