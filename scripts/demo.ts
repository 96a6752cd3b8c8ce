import { parseArgs } from "node:util";
import { Octokit } from "@octokit/rest";
import { Webhooks } from "@octokit/webhooks";
import { SshSession } from "../src/remote/ssh-session.js";
import { TestBed } from "../test/bed/bed.js";
import { waitFor } from "../test/bed/proc.js";
import { Receiver } from "../test/bed/receiver.js";
import { WorkRepo } from "../test/bed/work-repo.js";

/**
 * The README's main command. Until Tidemark's own deploy story lands (issues
 * 4 to 7), it shows the ground that story stands on: three hosts with real
 * systemd, a forge that sends GitHub webhooks, the GitHub stand-in and Redis,
 * each step checked. `--keep` leaves the bed up to explore.
 */
const { values } = parseArgs({ options: { keep: { type: "boolean", default: false } } });
const step = (text: string) => console.log(`\n▸ ${text}`);
const started = Date.now();

step("bringing up the test bed: 3 systemd hosts, a forge, Redis");
const bed = await TestBed.up({ systemdHosts: 3, redis: true, forge: true, owner: values.keep ? null : process.pid });
let failed = false;
try {
  for (const host of bed.hosts) {
    const session = await SshSession.connect(host, { privateKey: bed.clientKey });
    const { stdout } = await session.exec("hostname && systemctl is-system-running");
    session.close();
    const [name, state] = stdout.trim().split("\n");
    console.log(`  ${host.name}  ${host.address}  ${name}: systemd ${state}`);
    if (state !== "running") throw new Error(`${host.name} is ${state}`);
  }

  step("pushing a commit to the forge; it sends a signed push webhook");
  const receiver = await Receiver.start();
  await bed.forge!.addHook(bed.forgeRepo, { url: receiver.url, secret: bed.webhookSecret });
  const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
  const sha = await work.commit({ "clusters/staging/web01/nginx/nginx.conf": "worker_processes 1;\n" }, "Deploy nginx to web01");
  await work.push("main");
  const delivery = await waitFor("the push webhook", () => receiver.received[0]);
  const verified = await new Webhooks({ secret: bed.webhookSecret }).verify(delivery.body, String(delivery.headers["x-hub-signature-256"]));
  console.log(`  ${String(delivery.headers["x-github-event"])} ${String(delivery.headers["x-github-delivery"])} for ${sha.slice(0, 7)}, signature ${verified ? "valid" : "INVALID"}`);
  if (!verified) throw new Error("the webhook signature did not verify");
  await receiver.close();
  work.remove();

  step("posting a commit status to the GitHub stand-in (checked against GitHub's OpenAPI description)");
  const octokit = new Octokit({ baseUrl: bed.forge!.apiUrl, auth: bed.forge!.token });
  await octokit.repos.createCommitStatus({ owner: "acme", repo: "fleet", sha, state: "success", context: "tidemark/staging", description: "demo: the stand-in accepted this status" });
  const combined = await octokit.repos.getCombinedStatusForRef({ owner: "acme", repo: "fleet", ref: sha });
  console.log(`  tidemark/staging on ${sha.slice(0, 7)}: ${combined.data.state}`);
  const violations = await bed.forge!.violations();
  if (violations.length > 0) throw new Error(`the stand-in refused requests: ${JSON.stringify(violations)}`);

  console.log(`\n✓ every step checked in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (error) {
  failed = true;
  console.error(`\n✗ ${error instanceof Error ? error.message : String(error)}`);
} finally {
  if (values.keep) {
    console.log(`\nThe bed is still up:\n${JSON.stringify(bed.describe(), null, 2)}\nStop it with: npm run testbed -- down ${bed.id}`);
  } else {
    await bed.down();
  }
}
process.exit(failed ? 1 : 0);
