import type { Browser, Page } from "playwright-core";
import { beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import type { ApiRequest } from "../bed/forge/github-api.js";
import { freePort } from "../bed/ports.js";
import { waitFor } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import { launchBrowser, saveScreenshot } from "../helpers/browser.js";
import { bedConfig, operatorEnv, reportingServeEnv } from "../helpers/host-shell.js";
import { OperatorProcess, type LogLine } from "../helpers/operator-process.js";
import { integrationLifecycle } from "../helpers/lifecycle.js";

const HOSTS = ["web01", "web02"];
/** An app name from the config tree that would run if the page ever placed it as markup ('/' cannot be in a name). */
const SCRIPT_APP = "<script>alert(1)";

const app = (version: string, run = "exec sleep infinity") => ({
  "app/systemd/app.service": "[Unit]\nDescription=app\n\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/app/current/run.sh\n",
  "app/manifest.json": JSON.stringify({ systemd: { units_enabled: ["app.service"] } }),
  "app/run.sh": `${run}\n`,
  "app/version": `${version}\n`,
  [`${SCRIPT_APP}/note.txt`]: `${version}\n`,
});
const tree = (hosts: string[], files: Record<string, string>) =>
  Object.fromEntries(
    hosts.flatMap((host) => Object.entries(files).map(([path, content]) => [`clusters/staging/${host}/${path}`, content])),
  );

describe("the operator's page in a browser", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let operator: ReturnType<typeof operatorEnv>;
  let serve: OperatorProcess;
  let browser: Browser | undefined;
  let page: Page;
  const dialogs: string[] = [];
  const finished = (commit: string) => (line: LogLine) =>
    line.environment === "staging" && line.commit === commit && typeof line.outcome === "string";

  const owned = integrationLifecycle({ forge: () => bed?.forge, log: () => serve });

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ systemdHosts: 2, redis: true, forge: true }), (it) => it.down());
    work = owned.own(await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo)), (it) => it.remove());
    operator = owned.own(operatorEnv(bed), (it) => it.remove());
    await work.commit(
      {
        "tidemark.yaml": bedConfig(
          bed,
          ["staging: { track: { branch: main }, tree: clusters/staging }"],
          "{ maxParallel: 2, canary: 0, maxFailures: 2 }",
        ),
        ...tree(HOSTS, app("v1")),
      },
      "v1",
    );
    const port = await freePort();
    serve = await OperatorProcess.start(
      "serve",
      reportingServeEnv(bed, operator.env, { TIDEMARK_LISTEN: `127.0.0.1:${port}`, TIDEMARK_PUBLIC_URL: `http://127.0.0.1:${port}` }),
    );
    await bed.forge!.addHook(bed.forgeRepo, { url: `${serve.url}/webhooks/github`, secret: bed.webhookSecret });
    browser = owned.own(await launchBrowser(), (it) => it.close());
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("dialog", (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
  });

  it("the page a failure status links to shows the failed unit, its output and the rollback; names from the tree stay text", async () => {
    await work.push("main");
    const first = await serve.waitForLog(finished(await work.head()));
    expect(first.outcome).toBe("succeeded");
    const broken = await work.commit(
      tree(["web02"], app("v2", "echo 'app: cannot parse /etc/app.conf' >&2\nexit 3")),
      "v2, broken on web02",
    );
    await work.push("main");
    const done = await serve.waitForLog(finished(broken));
    expect(done.outcome).toBe("failed");

    // The failure status on the commit links to the deployment's page: follow it as a person would.
    const status = await waitFor("the failure status", async () =>
      (await bed.forge!.apiRequests()).find(
        (request: ApiRequest) =>
          request.method === "POST" &&
          request.path.endsWith(`/statuses/${broken}`) &&
          (request.body as { context?: string; state?: string }).context === "tidemark/staging" &&
          (request.body as { state?: string }).state === "failure",
      ),
    );
    const link = (status.body as { target_url: string }).target_url;
    expect(link).toBe(`${serve.url}/deployments/${String(done.deployment)}`);
    await page.goto(link);
    await saveScreenshot(page, "deployment-with-auto-rollback");

    const web02 = page.locator("#host-web02");
    await expect.poll(() => web02.locator("h2").innerText()).toBe("web02 rolled-back");
    expect(await web02.innerText()).toContain("app.service failed (exit-code); rolled back to");
    expect(await web02.locator("pre.output").innerText()).toContain("app: cannot parse /etc/app.conf");
    const steps = await web02.locator("table.timeline tbody tr td:first-child").allInnerTexts();
    expect(steps).toEqual([
      "connect",
      "lock",
      "inspect",
      "upload",
      "switch",
      "restart",
      "check",
      "rollback",
      "switch (rollback)",
      "restart (rollback)",
      "check (rollback)",
    ]);
    // web02's plan names the app from the tree literally; no script of the page's ran.
    expect(await web02.locator("ul.files").first().innerText()).toContain(`~ ${SCRIPT_APP}`);
    expect(dialogs).toEqual([]);
    // web01 had nothing to change: not contacted, and said so.
    expect(await page.locator("main").innerText()).toContain("Unchanged, not contacted: web01");
  });

  it("the overview shows each host's commit, the history with the rollback marked, and the plan of a commit not deployed", async () => {
    await work.git("revert", "--no-edit", "HEAD");
    const revert = await work.head();
    await work.push("main");
    const done = await serve.waitForLog(finished(revert));
    expect(done.returnTo).toBeDefined();

    await page.goto(`${serve.url}/`);
    await saveScreenshot(page, "overview");
    const rows = await page.locator("section table tbody tr").allInnerTexts();
    expect(rows).toHaveLength(2);
    for (const [i, host] of HOSTS.entries()) {
      expect(rows[i]).toContain(host);
      expect(rows[i]).toContain(`${revert.slice(0, 7)} ${String(done.deployment)}`);
      expect(rows[i]).toContain("up to date");
    }

    await page.goto(`${serve.url}/environments/staging`);
    await saveScreenshot(page, "environment");
    const history = await page.locator("h2:text('History') + table tbody tr").allInnerTexts();
    expect(history).toHaveLength(3);
    expect(history[0]).toContain(`return to `);
    expect(history[1]).toContain("failed");

    // A branch nobody deploys: its plan (where pull request statuses link) names what would change, against the store.
    await work.git("checkout", "--quiet", "-b", "feature");
    const feature = await work.commit(tree(["web01"], { "app/version": "v3\n" }), "v3 on web01");
    await work.push("feature");
    await waitFor(
      "the operator's mirror to fetch the branch",
      async () => (await fetch(`${serve.url}/plans/staging/${feature}`)).status === 200,
    );
    await page.goto(`${serve.url}/plans/staging/${feature}`);
    await saveScreenshot(page, "plan");
    expect(await page.locator("main section").allInnerTexts()).toEqual([
      "web01\n~ app\n~ version\n\nrestart app.service\n\nrollback available",
    ]);
    expect(dialogs).toEqual([]);
  });
});
