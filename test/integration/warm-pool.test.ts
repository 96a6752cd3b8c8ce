import { beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import { waitFor } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import { bedConfig, operatorEnv } from "../helpers/host-shell.js";
import { integrationLifecycle } from "../helpers/lifecycle.js";
import { OperatorProcess, type LogLine } from "../helpers/operator-process.js";
import { journalCursors, sshLogins } from "../helpers/sshd-logins.js";

const HOSTS = ["web01", "web02", "web03"] as const;

/** One app of one file on every host: no unit, no check, so a deployment is about as short as one gets. */
const tree = (version: string) => Object.fromEntries(HOSTS.map((host) => [`clusters/staging/${host}/app/version`, `${version}\n`]));

/** The process that serves one SSH connection on a host, once logged in (OpenSSH's title for a session without a tty). */
const SESSION = "^sshd: root@notty";

/**
 * `tidemark serve` keeps each host's connection open between deployments. The
 * hosts are looked at from outside their containers (nsenter), never over
 * SSH: sshd's own log counts the logins, and nothing else logs in.
 */
describe("tidemark serve keeps each host's SSH connection open between deployments", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let serve: OperatorProcess;

  const versions = () =>
    Promise.all(HOSTS.map(async (host) => (await bed.inHost(host, ["cat", "/var/lib/tidemark/apps/app/current/version"])).trim()));
  /** The SSH connections a host holds open now. */
  const sessions = () =>
    Promise.all(HOSTS.map(async (host) => Number((await bed.inHost(host, ["sh", "-c", `pgrep -c -f '${SESSION}' || true`])).trim())));
  const cursors = () => journalCursors(bed, HOSTS);
  const logins = (from: string[]) => sshLogins(bed, HOSTS, from);
  /** Pushes a new version to main and waits until serve has recorded its deployment. */
  const deploy = async (version: string): Promise<LogLine> => {
    const sha = await work.commit(tree(version), version);
    await work.push("main");
    return serve.waitForLog((line) => line.environment === "staging" && line.commit === sha && typeof line.outcome === "string");
  };
  /** Restarts a host's sshd and ends the sessions it served: restarting sshd alone leaves them running (KillMode=process). */
  const restartSshd = async (host: (typeof HOSTS)[number]) => {
    await bed.inHost(host, ["systemctl", "restart", "ssh.service"]);
    await bed.inHost(host, ["pkill", "-f", SESSION]);
    await waitFor(`${host}'s SSH sessions to end`, async () => (await sessions())[HOSTS.indexOf(host)] === 0);
  };

  const owned = integrationLifecycle({ forge: () => bed?.forge, log: () => serve });

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ systemdHosts: 3, redis: true, forge: true }), (it) => it.down());
    work = owned.own(await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo)), (it) => it.remove());
    const operator = owned.own(operatorEnv(bed), (it) => it.remove());
    await work.commit(
      {
        "tidemark.yaml": bedConfig(
          bed,
          ["staging: { track: { branch: main }, tree: clusters/staging }"],
          "{ maxParallel: 3, canary: 0, maxFailures: 3 }",
        ),
        ...tree("v0"),
      },
      "v0",
    );
    await work.push("main");
    serve = await OperatorProcess.start("serve", {
      ...operator.env,
      TIDEMARK_REDIS_URL: bed.redis!.url,
      TIDEMARK_WEBHOOK_SECRET: bed.webhookSecret,
      TIDEMARK_LISTEN: "127.0.0.1:0",
      TIDEMARK_POLL_INTERVAL: "0",
      TIDEMARK_SETTLE: "0",
    });
    await bed.forge!.addHook(bed.forgeRepo, { url: `${serve.url}/webhooks/github`, secret: bed.webhookSecret });
  });

  it("deploys 20 pushes to 3 hosts over 3 SSH connections, each still open after the last", { timeout: 120_000 }, async () => {
    const from = await cursors();
    for (let i = 1; i <= 20; i++) expect((await deploy(`v${i}`)).outcome).toBe("succeeded");
    expect(await versions()).toEqual(["v20", "v20", "v20"]);
    expect(await logins(from)).toEqual([1, 1, 1]);
    expect(await sessions()).toEqual([1, 1, 1]);
  });

  it("connects again to a host whose sshd restarted since, and deploys it", async () => {
    const from = await cursors();
    await restartSshd("web02");
    expect(await sessions()).toEqual([1, 0, 1]);
    const line = await deploy("v21");
    expect(line.outcome).toBe("succeeded");
    expect(await versions()).toEqual(["v21", "v21", "v21"]);
    expect(await logins(from)).toEqual([0, 1, 0]);
    expect(await sessions()).toEqual([1, 1, 1]);
  });

  it("checks the pinned key on that new connection: a host back with another key is refused, and deployed once its key is back", async () => {
    const config = "/etc/ssh/sshd_config.d/testbed.conf";
    const from = await cursors();
    // Another key of the same type, in the container's volatile overlay: the pinned one is bound in read-only.
    await bed.inHost("web02", ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/etc/ssh/other_host_key"]);
    await bed.inHost("web02", ["sed", "-i", "s#^HostKey .*#HostKey /etc/ssh/other_host_key#", config]);
    await restartSshd("web02");
    const refused = await deploy("v22");
    expect(refused.hosts).toEqual([
      expect.objectContaining({ host: "web01", outcome: "deployed" }),
      expect.objectContaining({ host: "web02", outcome: "unreachable", detail: expect.stringContaining("HOST_KEY_MISMATCH") as string }),
      expect.objectContaining({ host: "web03", outcome: "deployed" }),
    ]);
    expect(await versions()).toEqual(["v22", "v21", "v22"]);

    await bed.inHost("web02", ["sed", "-i", "s#^HostKey .*#HostKey /etc/ssh/ssh_host_ed25519_key#", config]);
    await bed.inHost("web02", ["systemctl", "restart", "ssh.service"]);
    expect((await deploy("v23")).outcome).toBe("succeeded");
    expect(await versions()).toEqual(["v23", "v23", "v23"]);
    // The refused connection never logged in; web01 and web03 kept theirs throughout.
    expect(await logins(from)).toEqual([0, 1, 0]);
  });
});
