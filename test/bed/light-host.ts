import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createCgroup, destroyCgroup } from "./cgroups.js";
import { generateKey } from "./keys.js";
import { freePort, greeting } from "./ports.js";
import { GiveUp, isAlive, spawnDetached, waitFor } from "./proc.js";
import { IN_CGROUP } from "./systemd-host.js";
import type { BedHost } from "./types.js";

export interface LightHostState extends BedHost {
  kind: "light";
  pid: number;
  cgroup: string;
  dir: string;
}

/** Paths a light host sees as its own: bind-mounted from its directory in a private mount namespace. */
const PRIVATE_PATHS = { root: "/root", srv: "/srv", tmp: "/tmp", "var-lib-tidemark": "/var/lib/tidemark" } as const;

/**
 * A light host: one plain sshd on a loopback port, with its own host key,
 * /root, /srv, /tmp and /var/lib/tidemark. No systemd: for fast tests and
 * scale runs of 100+ hosts.
 */
export async function startLightHost(options: {
  bedId: string;
  bedDir: string;
  name: string;
  authorizedKey: string;
}): Promise<LightHostState> {
  const { bedId, bedDir, name } = options;
  const dir = `${bedDir}/hosts/${name}`;
  for (const sub of Object.keys(PRIVATE_PATHS)) mkdirSync(`${dir}/${sub}`, { recursive: true });
  for (const target of Object.values(PRIVATE_PATHS)) mkdirSync(target, { recursive: true });
  mkdirSync("/run/sshd", { recursive: true });
  mkdirSync(`${dir}/root/.ssh`, { recursive: true, mode: 0o700 });
  writeFileSync(`${dir}/root/.ssh/authorized_keys`, `${options.authorizedKey}\n`);
  const hostKey = await generateKey(`${dir}/ssh_host_ed25519_key`, name);
  const cgroup = `tidemark-testbed/${bedId}/${name}`;
  const mounts = Object.entries(PRIVATE_PATHS).map(([sub, target]) => `mount --bind ${dir}/${sub} ${target}`);
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    writeFileSync(`${dir}/sshd_config`, sshdConfig(dir, port));
    rmSync(`${dir}/sshd.pid`, { force: true });
    const script = `${mounts.join(" && ")} && exec /usr/sbin/sshd -D -e -f ${dir}/sshd_config`;
    const pid = spawnDetached(
      "sh",
      [IN_CGROUP, createCgroup(cgroup).join(":"), "unshare", "--mount", "--propagation", "private", "sh", "-c", script],
      `${dir}/sshd.log`,
    );
    const up = await waitFor(
      `sshd of ${name} on port ${port}`,
      async () => {
        if (!isAlive(pid)) throw new GiveUp(`sshd of ${name} exited; see ${dir}/sshd.log`);
        // sshd writes its pid file once it holds the port: before that, a greeting may come from whoever took the port first.
        return existsSync(`${dir}/sshd.pid`) && (await greeting("127.0.0.1", port))?.startsWith("SSH-2.0-");
      },
      { timeoutMs: 10_000, intervalMs: 10 },
    ).catch((error: unknown) => {
      if (attempt < 3 && error instanceof GiveUp) return false; // lost the port to someone else: try another
      throw error;
    });
    if (up) return { kind: "light", name, address: "127.0.0.1", port, user: "root", hostKey: hostKey.publicKey, pid, cgroup, dir };
    await destroyCgroup(cgroup);
  }
}

export async function stopLightHost(host: Pick<LightHostState, "cgroup">): Promise<void> {
  await destroyCgroup(host.cgroup);
}

function sshdConfig(dir: string, port: number): string {
  return [
    `Port ${port}`,
    "ListenAddress 127.0.0.1",
    `HostKey ${dir}/ssh_host_ed25519_key`,
    `PidFile ${dir}/sshd.pid`,
    "UsePAM no",
    "StrictModes no",
    "PermitRootLogin prohibit-password",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "Subsystem sftp internal-sftp",
    "MaxStartups 200:30:400",
    "UseDNS no",
    "LogLevel ERROR",
    "",
  ].join("\n");
}
