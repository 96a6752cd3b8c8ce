import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SshSession } from "../../src/remote/ssh-session.js";
import type { TestBed } from "../bed/bed.js";

/** A test's own view of the bed's hosts: one reused SSH session per host, to look at what a deployment left. */
export class HostShell {
  private readonly sessions = new Map<string, SshSession>();

  constructor(private readonly bed: TestBed) {}

  /** Runs a command line on a host; stdout and stderr together, trimmed. */
  async run(host: string, line: string): Promise<string> {
    let session = this.sessions.get(host);
    if (!session?.alive) {
      // A probe is a quick read: one that hangs is a stuck host, better named than waited on for minutes.
      session = await SshSession.connect(this.bed.host(host), { privateKey: this.bed.clientKey, commandTimeoutMs: 20_000 });
      this.sessions.set(host, session);
    }
    const result = await session.exec(line);
    return `${result.stdout}${result.stderr}`.trim();
  }

  /** Forgets a host's session, e.g. after a test cut its connections on purpose. */
  forget(host: string): void {
    this.sessions.get(host)?.close();
    this.sessions.delete(host);
  }

  close(): void {
    for (const session of this.sessions.values()) session.close();
    this.sessions.clear();
  }
}

/** The operator's settings for a deploy against the bed: its forge repo, a fresh store and mirrors, the bed's key. */
export function operatorEnv(bed: TestBed): { env: NodeJS.ProcessEnv; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "tidemark-operator-"));
  const env = {
    TIDEMARK_REPO: bed.forge!.cloneUrl(bed.forgeRepo),
    TIDEMARK_STORE: join(dir, "store.git"),
    TIDEMARK_MIRRORS: join(dir, "mirrors"),
    TIDEMARK_SSH_KEY: bed.clientKeyPath,
  };
  return { env, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `tidemark serve` against the bed: webhooks on, polling off, short settle, reporting to the forge's GitHub stand-in. */
export function reportingServeEnv(bed: TestBed, operator: NodeJS.ProcessEnv, overrides: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...operator,
    TIDEMARK_REDIS_URL: bed.redis!.url,
    TIDEMARK_WEBHOOK_SECRET: bed.webhookSecret,
    TIDEMARK_LISTEN: "127.0.0.1:0",
    TIDEMARK_POLL_INTERVAL: "0",
    TIDEMARK_SETTLE: "0.3",
    TIDEMARK_GITHUB_TOKEN: bed.forge!.token,
    TIDEMARK_GITHUB_API_URL: bed.forge!.apiUrl,
    // GitHub asks for 1 s between writes; the stand-in does not, and the tests would crawl.
    TIDEMARK_GITHUB_WRITE_INTERVAL: "0.02",
    ...overrides,
  };
}

/** A tidemark.yaml for the bed: the environments' lines, every host of the bed with its pinned key, and the rollout policy. */
export function bedConfig(bed: TestBed, environments: string[], rollout: string): string {
  const hosts = bed.hosts.map((host) => `  ${host.name}: { address: ${host.address}, port: ${host.port}, hostKey: "${host.hostKey}" }`);
  return ["environments:", ...environments.map((line) => `  ${line}`), "hosts:", ...hosts, `rollout: ${rollout}`, ""].join("\n");
}
