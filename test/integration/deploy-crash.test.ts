import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { commitScript } from "../../src/remote/commands.js";
import { SshSession } from "../../src/remote/ssh-session.js";
import { GiveUp, run, waitFor } from "../bed/proc.js";
import { TestBed } from "../bed/bed.js";
import { WorkRepo } from "../bed/work-repo.js";
import { bedConfig, HostShell, operatorEnv } from "../helpers/host-shell.js";

const CLI = new URL("../helpers/tidemark-process.ts", import.meta.url).pathname;
const service = "[Unit]\nDescription=app\n\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/app/current/run.sh\n";

interface Deployment {
  hosts: Array<{ host: string; outcome: string; detail?: string; uploadedBytes?: number }>;
}

describe("a deployment killed or cut off at any phase", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let env: NodeJS.ProcessEnv;
  let shell: HostShell;
  let operator: ReturnType<typeof operatorEnv>;

  const sh = (host: string, line: string) => shell.run(host, line);

  /** Runs `tidemark deploy` as a process; `onLine` sees each progress line and may kill it. */
  function deploy(
    onLine: (line: string, kill: () => void) => void = () => undefined,
  ): Promise<{ code: number | null; signal: string | null; deployment?: Deployment; stderr: string }> {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, "deploy", "staging", "--yes", "--json", "--settle", "0.3"], {
      env: { ...process.env, ...env },
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
    // "close", not "exit": the JSON may still be in the pipe when the process has exited.
    return new Promise((resolve) =>
      child.on("close", (code, signal) =>
        resolve({ code, signal, stderr, ...(stdout.trim().startsWith("{") ? { deployment: JSON.parse(stdout) as Deployment } : {}) }),
      ),
    );
  }

  /** What no crash may ever leave: `current` on a partial release. Returns the host's target and current lines. */
  async function invariants(host: string): Promise<{ target: string; current: string; version: string }> {
    const link = await sh(host, "readlink /var/lib/tidemark/apps/app/current || echo none");
    expect(link).toMatch(/^([0-9a-f]{40}|none)$/);
    if (link !== "none") expect(await sh(host, `test -d /var/lib/tidemark/apps/app/${link} && echo whole`)).toBe("whole");
    const [target, current, version] = (
      await sh(
        host,
        "cat /var/lib/tidemark/target 2>/dev/null || echo -; cat /var/lib/tidemark/current 2>/dev/null || echo -; cat /var/lib/tidemark/apps/app/current/version 2>/dev/null || echo -",
      )
    ).split("\n");
    return { target: target!, current: current!, version: version! };
  }

  /** Runs again until every host is deployed or unchanged: the lock of a killed run goes with its SSH session. */
  async function converge(): Promise<Deployment> {
    return waitFor(
      "a rerun to converge",
      async () => {
        const result = await deploy();
        if (!result.deployment) throw new GiveUp(`deploy failed: ${result.stderr}`);
        const stuck = result.deployment.hosts.filter((host) => !["deployed", "unchanged"].includes(host.outcome));
        if (stuck.some((host) => !host.detail?.startsWith("locked"))) throw new GiveUp(`did not converge: ${JSON.stringify(stuck)}`);
        return stuck.length === 0 ? result.deployment : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
  }

  const tree = (version: string, extra: Record<string, string> = {}) =>
    Object.fromEntries(
      bed.hosts.flatMap((host) =>
        Object.entries({
          "app/systemd/app.service": service,
          "app/run.sh": "exec sleep infinity\n",
          "app/version": `${version}\n`,
          "app/manifest.json": JSON.stringify({ systemd: { units_enabled: ["app.service"] } }),
          ...extra,
        }).map(([path, content]) => [`clusters/staging/${host.name}/${path}`, content]),
      ),
    );

  beforeAll(async () => {
    bed = await TestBed.up({ systemdHosts: 2, forge: true });
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    shell = new HostShell(bed);
    operator = operatorEnv(bed);
    env = operator.env;
    await work.commit(
      {
        "tidemark.yaml": bedConfig(bed, ["staging: { track: { branch: main }, tree: clusters/staging }"], "{ canary: 0, maxFailures: 10 }"),
        ...tree("0"),
      },
      "zero",
    );
    await work.push("main");
    expect((await converge()).hosts.map((host) => host.outcome)).toEqual(["deployed", "deployed"]);
  });

  afterAll(async () => {
    shell?.close();
    work?.remove();
    operator?.remove();
    await bed?.down();
  });

  for (const [i, phase] of ["inspect", "upload", "switch", "check", "commit"].entries()) {
    it(`killed with SIGKILL when a host reaches "${phase}": never a partial release, and a rerun converges with target = current`, async () => {
      const version = `${i + 1}`;
      await work.commit(tree(version, { "app/data.bin": "x".repeat(2_000_000 + i) }), `version ${version}`);
      await work.push("main");
      const killed = await deploy((line, kill) => {
        if (line === `web01: ${phase}`) kill();
      });
      expect(killed.signal).toBe("SIGKILL");
      for (const host of ["web01", "web02"]) await invariants(host);

      await converge();
      for (const host of ["web01", "web02"]) {
        const state = await invariants(host);
        expect(state.version).toBe(version);
        expect(state.target.split(" ")[1]).toBe(state.current.split(" ")[1]);
        expect(await sh(host, "systemctl is-active app.service")).toBe("active");
      }
    });
  }

  it("a connection cut mid-upload fails that host with nothing switched; the other host deploys", async () => {
    await work.commit(tree("cut", { "app/data.bin": "y".repeat(15_000_000) }), "a big upload");
    await work.push("main");
    const before = await invariants("web01");
    // A watcher on web01 waits for the upload to begin, then ends every sshd session there, the deployment's with it.
    const release = (await run("git", ["-C", work.dir, "rev-parse", "HEAD:clusters/staging/web01/app"])).stdout.trim();
    const watcher = await SshSession.connect(bed.host("web01"), { privateKey: bed.clientKey });
    const cut = watcher
      .exec(`while [ ! -e /var/lib/tidemark/apps/app/.partial-${release}/data.bin ]; do sleep 0.01; done; pkill -f 'sshd: root@notty'`)
      .catch(() => "cut");
    const result = await deploy();
    expect(await cut).toBe("cut");
    watcher.close();
    shell.forget("web01");
    if (!result.deployment)
      throw new Error(`deploy printed no result (exit ${String(result.code)}, signal ${String(result.signal)}): ${result.stderr}`);
    const outcomes = Object.fromEntries(result.deployment.hosts.map((host) => [host.host, host]));
    expect(outcomes.web01!.outcome).toBe("failed");
    // Cut during a write, or as the next step's command opens: either way a lost connection, before the switch.
    expect(outcomes.web01!.detail).toMatch(
      /^upload failed, nothing switched: web01: the connection was lost (\(|before a command could start)/,
    );
    expect(outcomes.web02!.outcome).toBe("deployed");
    const after = await invariants("web01");
    expect(after.current).toBe(before.current);
    expect(after.version).toBe(before.version);
    await converge();
    expect((await invariants("web01")).version).toBe("cut");
  });

  it("a full disk fails the host before anything changes, says so and what to do; freed, a rerun converges", async () => {
    // web01's /var/lib/tidemark moves onto a disk of its own, a little bigger than what it holds, and fills up.
    await sh(
      "web01",
      "cp -a /var/lib/tidemark /run/kept && mount -t tmpfs -o size=$(( $(du -sk /run/kept | cut -f1) + 4096 ))k full /var/lib/tidemark && cp -a /run/kept/. /var/lib/tidemark/ && rm -rf /run/kept && { dd if=/dev/zero of=/var/lib/tidemark/filler bs=64k 2>/dev/null || true; }",
    );
    const before = await invariants("web01");
    // A state file that cannot be written stops the script: `current` is never left saying what the host no longer runs.
    const session = await SshSession.connect(bed.host("web01"), { privateKey: bed.clientKey });
    const commit = commitScript("root", "d-full", "t-full", [], 3);
    expect((await session.exec(commit.line, commit.input)).code).not.toBe(0);
    session.close();

    await work.commit(tree("full"), "version full");
    await work.push("main");
    const result = await deploy();
    if (!result.deployment)
      throw new Error(`deploy printed no result (exit ${String(result.code)}, signal ${String(result.signal)}): ${result.stderr}`);
    const outcomes = Object.fromEntries(result.deployment.hosts.map((host) => [host.host, host]));
    expect(outcomes.web01).toMatchObject({
      outcome: "failed",
      detail: expect.stringMatching(
        /nothing switched: web01's disk is full \(\d+ KiB free of \d+ KiB in \/var\/lib\/tidemark\).*HOST_DISK_FULL.*free space on web01/s,
      ) as string,
    });
    expect(outcomes.web02!.outcome).toBe("deployed");
    expect(await invariants("web01")).toEqual(before);
    expect(before.target).toBe(before.current);

    await sh("web01", "rm /var/lib/tidemark/filler");
    await converge();
    expect((await invariants("web01")).version).toBe("full");
  });

  it("killed after a host committed but before the store recorded it: the next commit is planned from what that host runs", async () => {
    // One host at a time: web01 has committed when web02 starts.
    const config = readFileSync(join(work.dir, "tidemark.yaml"), "utf8").replace("maxFailures: 10 }", "maxFailures: 10, maxParallel: 1 }");
    const big = { "app/data.bin": "z".repeat(3_000_000) };
    await work.commit({ "tidemark.yaml": config, ...tree("unrecorded", big) }, "one host at a time, and a big file");
    await work.push("main");
    const killed = await deploy((line, kill) => {
      if (line === "web02: connect") kill();
    });
    expect(killed.signal).toBe("SIGKILL");
    expect((await invariants("web01")).version).toBe("unrecorded");

    await work.commit(tree("next", big), "version next");
    await work.push("main");
    const outcomes = Object.fromEntries((await converge()).hosts.map((host) => [host.host, host]));
    expect(outcomes.web01).toMatchObject({
      outcome: "deployed",
      detail: expect.stringMatching(
        /^planned again from [0-9a-f]{7}, which web01 runs: the store expected [0-9a-f]{7} \(a run was cut before it was recorded\)$/,
      ) as string,
    });
    // Planned from the release it runs, web01 receives the changed version file, not the big file again.
    expect(outcomes.web01!.uploadedBytes).toBeLessThan(1000);
    expect(outcomes.web02!.uploadedBytes).toBeGreaterThan(3_000_000);
    for (const host of ["web01", "web02"]) {
      const state = await invariants(host);
      expect(state.version).toBe("next");
      expect(state.target.split(" ")[1]).toBe(state.current.split(" ")[1]);
    }
  });
});
