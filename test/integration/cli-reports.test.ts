import { spawn } from "node:child_process";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import type { ApiRequest } from "../bed/forge/github-api.js";
import { WorkRepo } from "../bed/work-repo.js";
import { bedConfig, HostShell, operatorEnv } from "../helpers/host-shell.js";
import { tidemark } from "../helpers/run-cli.js";
import { integrationLifecycle } from "../helpers/lifecycle.js";

const HOSTS = ["web01", "web02"];
const PUBLIC_URL = "http://127.0.0.1:8080/tidemark";
const CLI = new URL("../helpers/tidemark-process.ts", import.meta.url).pathname;

const app = (version: string, run = "exec sleep infinity") => ({
  "app/systemd/app.service": "[Unit]\nDescription=app\n\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/app/current/run.sh\n",
  "app/manifest.json": JSON.stringify({ systemd: { units_enabled: ["app.service"] } }),
  "app/run.sh": `${run}\n`,
  "app/version": `${version}\n`,
});
const tree = (files: Record<string, string>, only?: string) =>
  Object.fromEntries(
    HOSTS.filter((host) => !only || host === only).flatMap((host) =>
      Object.entries(files).map(([path, content]) => [`clusters/staging/${host}/${path}`, content]),
    ),
  );

type Posted = ApiRequest & { body: { context: string; state: string; description: string; target_url?: string } };
interface DeploymentJson {
  schema: string;
  id: string;
  hosts: Array<{ host: string; outcome: string }>;
}

/**
 * `tidemark deploy` and `rollback` with GitHub's settings, no Redis: they post
 * what the operator posts, to the forge's GitHub stand-in, which checks every
 * request against GitHub's OpenAPI description.
 */
describe("the CLI reports its deployments to GitHub", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let shell: HostShell;
  let operator: ReturnType<typeof operatorEnv>;
  /** The CLI with GitHub settings, as serve would have them. */
  let env: NodeJS.ProcessEnv;

  const requests = async () => bed.forge!.apiRequests();
  const statusRequests = async (sha: string) =>
    (await requests()).filter((request): request is Posted => request.method === "POST" && request.path.endsWith(`/statuses/${sha}`));
  /** What a person sees on the commit, in the order it was posted, from the `from`-th status request on. */
  const statuses = async (sha: string, from = 0) =>
    (await statusRequests(sha))
      .slice(from)
      .filter((request) => request.status === 201)
      .map(({ body }) => `${body.context} ${body.state} ${body.description}`);
  const deploymentStates = async (sha: string) => {
    const all = await requests();
    const created = all.filter(
      (request) =>
        request.operationId === "repos/create-deployment" && request.status === 201 && (request.body as { ref: string }).ref === sha,
    );
    return {
      created: created.length,
      states: all
        .filter((request) => request.operationId === "repos/create-deployment-status" && request.status === 201)
        .map((request) => ({ state: (request.body as { state: string }).state, path: request.path })),
    };
  };
  const history = async () =>
    JSON.parse((await tidemark(["history", "staging", "--json"], operator.env)).stdout) as Array<{
      id: string;
      pin?: string;
      hosts: Array<{ host: string; outcome: string }>;
    }>;
  const deploy = async (extra: NodeJS.ProcessEnv = {}) => {
    const result = await tidemark(["deploy", "staging", "--yes", "--json", "--settle", "0.3"], { ...env, ...extra });
    return { ...result, json: JSON.parse(result.stdout) as DeploymentJson };
  };
  const push = async (files: Record<string, string | null>, message: string) => {
    const sha = await work.commit(files, message);
    await work.push("main");
    return sha;
  };

  const owned = integrationLifecycle({ forge: () => bed?.forge });

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ systemdHosts: 2, forge: true }), (it) => it.down());
    work = owned.own(await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo)), (it) => it.remove());
    shell = owned.own(new HostShell(bed), (it) => it.close());
    operator = owned.own(operatorEnv(bed), (it) => it.remove());
    env = {
      ...operator.env,
      TIDEMARK_GITHUB_TOKEN: bed.forge!.token,
      TIDEMARK_GITHUB_API_URL: bed.forge!.apiUrl,
      TIDEMARK_GITHUB_WRITE_INTERVAL: "0.02",
      TIDEMARK_PUBLIC_URL: PUBLIC_URL,
    };
    await push(
      {
        "tidemark.yaml": bedConfig(
          bed,
          [
            "staging: { track: { branch: main }, tree: clusters/staging }",
            "production: { track: { tag: production }, tree: clusters/production }",
          ],
          "{ maxParallel: 2, canary: 0, maxFailures: 10 }",
        ),
        ...tree(app("v0")),
      },
      "zero",
    );
  });

  afterEach(async () => {
    await bed.forge!.setFaults([]);
  });

  it("tidemark deploy posts pending, then every host's final status, then the environment's, and a GitHub Deployment", async () => {
    const sha = await push(tree(app("v1")), "v1");
    const { code, json, stderr } = await deploy();
    expect(code).toBe(0);
    expect(stderr).not.toMatch(/^(warning|note):/m);
    // The command returns once its reports are out: nothing to wait for.
    expect(await statuses(sha)).toEqual([
      "tidemark/staging pending deploying to 2 hosts",
      "tidemark/staging/web01 pending deploying",
      "tidemark/staging/web02 pending deploying",
      `tidemark/staging/web01 success deployed ${sha.slice(0, 7)}`,
      `tidemark/staging/web02 success deployed ${sha.slice(0, 7)}`,
      "tidemark/staging success deployed to 2/2 hosts",
    ]);
    expect((await statusRequests(sha)).at(-1)!.body.target_url).toBe(`${PUBLIC_URL}/deployments/${json.id}`);
    const deployments = await deploymentStates(sha);
    expect(deployments.created).toBe(1);
    expect(deployments.states.map((state) => state.state)).toEqual(["in_progress", "success"]);
    expect(new Set(deployments.states.map((state) => state.path)).size).toBe(1);
  });

  it("a failing deployment: the hosts' statuses, then failure on the environment; the exit code is the deployment's", async () => {
    const before = await work.head();
    const sha = await push({ ...tree(app("v2")), ...tree(app("v2", "exit 3"), "web02") }, "v2, broken on web02");
    const { code } = await deploy();
    expect(code).toBe(1);
    expect(await statuses(sha)).toEqual([
      "tidemark/staging pending deploying to 2 hosts",
      "tidemark/staging/web01 pending deploying",
      "tidemark/staging/web02 pending deploying",
      `tidemark/staging/web01 success deployed ${sha.slice(0, 7)}`,
      `tidemark/staging/web02 failure rolled-back: app.service failed (exit-code); rolled back to ${before.slice(0, 7)}`,
      `tidemark/staging failure web02: app.service failed (exit-code); rolled back to ${before.slice(0, 7)}`,
    ]);
    expect((await deploymentStates(sha)).states.slice(-2).map((state) => state.state)).toEqual(["in_progress", "failure"]);
  });

  it("tidemark rollback from the store posts the same, on the commit it returns to; a return to the tree already live pins and posts nothing", async () => {
    const [, good] = await history();
    const v1 = (await work.git("rev-parse", "HEAD~1")).trim();
    const from = (await statusRequests(v1)).length;
    const rolled = await tidemark(["rollback", "staging", good!.id, "--yes", "--settle", "0.3"], env);
    expect(rolled.code).toBe(0);
    expect(await shell.run("web01", "cat /var/lib/tidemark/apps/app/current/version")).toBe("v1");
    const back = `return to ${good!.id} (${v1.slice(0, 7)})`;
    expect(await statuses(v1, from)).toEqual([
      `tidemark/staging pending ${back}: deploying to 1 host`,
      "tidemark/staging/web01 pending deploying",
      `tidemark/staging/web01 success ${back}: deployed ${v1.slice(0, 7)}`,
      "tidemark/staging/web02 success unchanged: already runs this config",
      `tidemark/staging success ${back}: deployed to 2/2 hosts`,
    ]);
    expect((await tidemark(["unpin", "staging"], env)).code).toBe(0);

    // Every host runs that tree now: nothing to deploy, but the pin asked for is set; the commit keeps its word.
    const asked = (await requests()).length;
    const again = await tidemark(["rollback", "staging", good!.id, "--yes"], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(
      `every host of staging already runs the tree of ${good!.id}: nothing deployed\nstaging is pinned (${back})`,
    );
    expect((await requests()).length).toBe(asked);
    const [pinned] = await history();
    expect(pinned).toMatchObject({
      pin: back,
      hosts: [
        { host: "web01", outcome: "unchanged" },
        { host: "web02", outcome: "unchanged" },
      ],
    });
    expect((await tidemark(["unpin", "staging"], env)).code).toBe(0);
  });

  it("GitHub answering 502 for a while: the report is tried again, the ones behind it wait, and the end arrives in order", async () => {
    await bed.forge!.setFaults([{ kind: "status", status: 502, times: 3, path: "/statuses/" }]);
    const sha = await push(tree(app("v3")), "v3");
    const { code, stderr } = await deploy();
    expect(code).toBe(0);
    expect(stderr).not.toMatch(/^warning:/m);
    const answers = (await statusRequests(sha)).map((request) => request.status);
    expect(answers.slice(0, 3)).toEqual([502, 502, 502]);
    expect(new Set(answers.slice(3))).toEqual(new Set([201]));
    // Pending statuses still waiting when the end was ready are not posted over it (a newer one of the same status replaced them).
    const seen = await statuses(sha);
    expect(seen.slice(-3)).toEqual([
      `tidemark/staging/web01 success deployed ${sha.slice(0, 7)}`,
      `tidemark/staging/web02 success deployed ${sha.slice(0, 7)}`,
      "tidemark/staging success deployed to 2/2 hosts",
    ]);
    expect(seen.slice(0, -3).every((line) => line.includes(" pending "))).toBe(true);
  });

  it("GitHub down past TIDEMARK_GITHUB_REPORT_TIMEOUT: the process says what was not posted and exits with the deployment's code", async () => {
    await bed.forge!.setFaults([{ kind: "status", status: 502, times: 10_000, path: "/statuses/" }]);
    const sha = await push(tree(app("v4")), "v4");
    // A process of its own: once it gave up, nothing of Octokit's may keep it alive.
    const child = spawn(process.execPath, ["--import", "tsx", CLI, "deploy", "staging", "--yes", "--json", "--settle", "0.3"], {
      env: { PATH: process.env.PATH, ...env, TIDEMARK_GITHUB_REPORT_TIMEOUT: "3" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    let printed = 0;
    child.stdout.on("data", () => (printed ||= Date.now()));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    const ended = Date.now();
    expect(code, stderr).toBe(0);
    expect((JSON.parse(stdout) as DeploymentJson).hosts.map((host) => host.outcome)).toEqual(["deployed", "deployed"]);
    // The result is printed first; then at most the timeout, and the process is gone.
    expect(ended - printed).toBeLessThan(3000 + 2000);
    const warning = stderr.split("\n").find((line) => line.startsWith("warning: not posted to GitHub"));
    expect(warning).toMatch(
      new RegExp(
        `^warning: not posted to GitHub on ${sha.slice(0, 7)} \\(tried for up to 3 s\\): tidemark/staging/web01 success, tidemark/staging/web02 success, tidemark/staging success, GitHub deployment success; (Server Error.* \\(.*deadline\\)|not tried before the deadline)$`,
      ),
    );
    expect(await statuses(sha)).toEqual([]);
  }, 90_000);

  it("a commit that changes nothing for staging: nothing deployed or recorded, one success no change for staging; without GitHub settings, it says so once", async () => {
    const recorded = await history();
    const sha = await push({ "clusters/production/web01/app/version": "p1\n" }, "production only");
    const asked = (await requests()).length;
    const { code, json } = await deploy();
    expect(code).toBe(0);
    expect(json).toEqual({
      schema: "tidemark.no-change/v1",
      environment: "staging",
      sourceCommit: sha,
      sourceRef: "refs/heads/main",
      hosts: [
        { host: "web01", outcome: "unchanged" },
        { host: "web02", outcome: "unchanged" },
      ],
    });
    expect(await history()).toEqual(recorded);
    expect(await statuses(sha)).toEqual(["tidemark/staging success no change for staging"]);
    expect((await statusRequests(sha)).at(-1)!.body.target_url).toBe(`${PUBLIC_URL}/environments/staging`);
    expect((await requests()).length).toBe(asked + 1);

    const quiet = await push(tree(app("v5")), "v5");
    const off = await tidemark(["deploy", "staging", "--yes", "--settle", "0.3"], operator.env);
    expect(off.code).toBe(0);
    expect(off.stderr.split("\n").filter((line) => line.includes("GitHub"))).toEqual([
      "note: nothing is reported to GitHub (no TIDEMARK_GITHUB_TOKEN or GitHub App configured)",
    ]);
    expect(await statusRequests(quiet)).toEqual([]);
    expect((await requests()).length).toBe(asked + 1);
  });
});
