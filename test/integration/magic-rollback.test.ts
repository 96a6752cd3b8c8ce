import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SshSession } from "../../src/remote/ssh-session.js";
import { GiveUp, waitFor } from "../bed/proc.js";
import { TestBed } from "../bed/bed.js";
import { WorkRepo } from "../bed/work-repo.js";
import { bedConfig, HostShell, operatorEnv } from "../helpers/host-shell.js";

const CLI = new URL("../helpers/tidemark-process.ts", import.meta.url).pathname;
const CONFIRM_SECONDS = 4;
const service = "[Unit]\nDescription=app\n\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/app/current/run.sh\n";

interface Deployment {
  hosts: Array<{ host: string; outcome: string; detail?: string }>;
}

describe("a host that loses its operator after the switch rolls itself back", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let shell: HostShell;
  let operator: ReturnType<typeof operatorEnv>;
  const sh = (line: string) => shell.run("web01", line);

  /** `tidemark deploy` as a process; `onLine` sees each progress line and may kill it. */
  function deploy(
    onLine: (line: string, kill: () => void) => void = () => undefined,
  ): Promise<{ signal: string | null; deployment?: Deployment; stderr: string }> {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, "deploy", "staging", "--yes", "--json", "--settle", "0.3"], {
      env: { ...process.env, ...operator.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => {
      const before = stderr.length;
      stderr += chunk.toString();
      for (const line of stderr
        .slice(stderr.lastIndexOf("\n", before) + 1)
        .split("\n")
        .slice(0, -1))
        onLine(line, () => child.kill("SIGKILL"));
    });
    return new Promise((resolve) =>
      child.on("close", (_, signal) =>
        resolve({ signal, stderr, ...(stdout.trim().startsWith("{") ? { deployment: JSON.parse(stdout) as Deployment } : {}) }),
      ),
    );
  }

  const tree = (version: string, light = "1") => ({
    "clusters/staging/web01/app/systemd/app.service": service,
    "clusters/staging/web01/app/run.sh": "exec sleep infinity\n",
    "clusters/staging/web01/app/version": `${version}\n`,
    "clusters/staging/web01/app/manifest.json": JSON.stringify({ systemd: { units_enabled: ["app.service"] } }),
    // A host without systemd: no units, a check that takes a moment.
    "clusters/staging/light001/plain/version": `${light}\n`,
    "clusters/staging/light001/plain/manifest.json": JSON.stringify({ checks: [{ command: "sleep 1" }] }),
  });

  /** What web01 runs: the version behind `current`, whether its unit is active, and what waits to undo an activation. */
  const running = async () => ({
    version: await sh("cat /var/lib/tidemark/apps/app/current/version"),
    active: await sh("systemctl is-active app.service || true"),
    armed: await sh("ls /var/lib/tidemark/undo; systemctl list-units --all --plain --no-legend 'tidemark-undo-*' | cut -d' ' -f1"),
  });

  async function push(version: string): Promise<void> {
    await work.commit(tree(version), `version ${version}`);
    await work.push("main");
  }

  /** Waits until web01 runs `version` again with its unit active and nothing armed, by itself (no deployment runs meanwhile). */
  const backOn = (version: string) =>
    waitFor(
      `web01 to switch back to ${version} by itself`,
      async () => {
        const now = await running();
        return now.version === version && now.active === "active" && now.armed === "" ? now : undefined;
      },
      { timeoutMs: (CONFIRM_SECONDS + 20) * 1000, intervalMs: 200 },
    );

  beforeAll(async () => {
    bed = await TestBed.up({ systemdHosts: 1, lightHosts: 1, forge: true });
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    shell = new HostShell(bed);
    operator = operatorEnv(bed);
    await work.commit(
      {
        "tidemark.yaml": bedConfig(
          bed,
          ["staging: { track: { branch: main }, tree: clusters/staging }"],
          `{ canary: 0, confirmSeconds: ${CONFIRM_SECONDS} }`,
        ),
        ...tree("1"),
      },
      "version 1",
    );
    await work.push("main");
    expect((await deploy()).deployment?.hosts).toEqual([
      expect.objectContaining({ host: "light001", outcome: "deployed" }),
      expect.objectContaining({ host: "web01", outcome: "deployed" }),
    ]);
  });

  afterAll(async () => {
    shell?.close();
    work?.remove();
    operator?.remove();
    await bed?.down();
  });

  it("confirmed, a deployment stays: nothing is left armed to switch it back", async () => {
    await push("2");
    const { deployment } = await deploy();
    expect(deployment?.hosts[1]).toMatchObject({ host: "web01", outcome: "deployed" });
    expect(await running()).toEqual({ version: "2", active: "active", armed: "" });
  });

  it("the operator killed with SIGKILL right after the switch: within the timer the host is back on the previous release, units active", async () => {
    await push("3");
    const killed = await deploy((line, kill) => {
      if (line === "web01: check") kill();
    });
    expect(killed.signal).toBe("SIGKILL");
    await backOn("2");
    expect(await sh("cat /var/lib/tidemark/rolled-back")).toMatch(
      new RegExp(`^deployment \\S+ was not confirmed within ${CONFIRM_SECONDS} s .*; rolled back to [0-9a-f]{7}, by its own timer, \\S+Z$`),
    );

    // The next deployment says so, and brings the new version.
    const { deployment } = await deploy();
    expect(deployment?.hosts[1]).toMatchObject({
      host: "web01",
      outcome: "deployed",
      detail: expect.stringMatching(/^rolled itself back before this deployment: deployment \S+ was not confirmed within/) as string,
    });
    expect(await running()).toEqual({ version: "3", active: "active", armed: "" });
  });

  it("the connection cut right after the switch: the deployment fails saying so, and the host switches back by itself", async () => {
    await push("4");
    // A watcher on web01 waits for the switch, then ends every sshd session there, the deployment's with it.
    const watcher = await SshSession.connect(bed.host("web01"), { privateKey: bed.clientKey });
    const cut = watcher
      .exec(`while [ "$(cat /var/lib/tidemark/apps/app/current/version)" != 4 ]; do sleep 0.01; done; pkill -f 'sshd: root@notty'`)
      .catch(() => "cut");
    const result = await deploy();
    expect(await cut).toBe("cut");
    watcher.close();
    shell.forget("web01");
    const web01 = result.deployment?.hosts[1];
    if (!web01) throw new GiveUp(`deploy printed no result: ${result.stderr}`);
    expect(web01).toMatchObject({
      outcome: "failed",
      detail: expect.stringMatching(
        new RegExp(
          `the connection was lost .*unless a deployment confirms it, web01 switches back by itself within ${CONFIRM_SECONDS} s`,
          "s",
        ),
      ) as string,
    });
    await backOn("3");
  });

  it("a host without systemd does the same with a sleeper of its own", async () => {
    await work.commit(tree("3", "2"), "light001 version 2");
    await work.push("main");
    const killed = await deploy((line, kill) => {
      if (line === "light001: check") kill();
    });
    expect(killed.signal).toBe("SIGKILL");
    const light = (line: string) => shell.run("light001", line);
    expect(await light("cat /var/lib/tidemark/apps/plain/current/version")).toBe("2");
    await waitFor(
      "light001 to switch back to 1 by itself",
      async () => ((await light("cat /var/lib/tidemark/apps/plain/current/version; ls /var/lib/tidemark/undo")) === "1" ? true : undefined),
      { timeoutMs: (CONFIRM_SECONDS + 20) * 1000, intervalMs: 200 },
    );
    expect(await light("cat /var/lib/tidemark/rolled-back")).toMatch(/by its own timer/);
  });
});
