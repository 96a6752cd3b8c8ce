import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { SshSession } from "../../src/remote/ssh-session.js";
import { createCgroup, destroyCgroup, isInCgroup } from "./cgroups.js";
import { generateKey } from "./keys.js";
import { addHostNamespace, type BedNetwork } from "./network.js";
import { GiveUp, isAlive, run, sleep, spawnDetached, waitFor } from "./proc.js";
import type { BedHost } from "./types.js";

export const IN_CGROUP = fileURLToPath(new URL("./in-cgroup.sh", import.meta.url));

export interface SystemdHostState extends BedHost {
  kind: "systemd";
  pid: number;
  cgroup: string;
  machine: string;
  /** How it was booted: what `rebootSystemdHost` needs to boot it again (absent in the state of older beds). */
  boot?: SystemdBoot;
}

/** How a host is booted, kept so that `rebootSystemdHost` boots the same host again. */
export interface SystemdBoot {
  rootfs: string;
  dir: string;
  netns: string;
  hostKeyPath: string;
  /** /var/lib/tidemark and /etc/systemd/system live in `<dir>/disk` and survive a reboot. */
  persistentDisk: boolean;
}

/** The host's directories kept across reboots, bound over the volatile overlay. */
const PERSISTENT = { tidemark: "/var/lib/tidemark", "systemd-system": "/etc/systemd/system" } as const;

/**
 * Boots one host: a systemd-nspawn container with real systemd and sshd, on a
 * volatile overlay of the shared root fs (every boot starts clean), in its own
 * network namespace, with its own host key and the bed's client key bound in.
 * With `persistentDisk`, its /var/lib/tidemark and /etc/systemd/system are
 * bound from the bed's dir instead, so that a reboot keeps what was deployed.
 */
export async function bootSystemdHost(options: {
  bedId: string;
  bedDir: string;
  rootfs: string;
  network: BedNetwork;
  index: number;
  name: string;
  authorizedKey: string;
  persistentDisk?: boolean;
}): Promise<SystemdHostState> {
  const { bedId, bedDir, rootfs, network, index, name } = options;
  const dir = `${bedDir}/hosts/${name}`;
  mkdirSync(dir, { recursive: true });
  const hostKey = await generateKey(`${dir}/ssh_host_ed25519_key`, name);
  writeFileSync(`${dir}/authorized_keys`, `${options.authorizedKey}\n`);
  const persistentDisk = options.persistentDisk ?? false;
  if (persistentDisk) {
    mkdirSync(`${dir}/disk/tidemark`, { recursive: true });
    // The root fs's own units and masks stay: the host's copy starts as the tree's.
    await run("cp", ["-a", "--", `${rootfs}${PERSISTENT["systemd-system"]}`, `${dir}/disk/systemd-system`]);
  }
  const { netns, address } = await addHostNamespace(bedId, network, index, name);
  const boot: SystemdBoot = { rootfs, dir, netns, hostKeyPath: hostKey.privateKeyPath, persistentDisk };
  const host: SystemdHostState = {
    kind: "systemd",
    name,
    address,
    port: 22,
    user: "root",
    hostKey: hostKey.publicKey,
    pid: 0,
    cgroup: `tidemark-testbed/${bedId}/${name}`,
    machine: `tmk-${bedId}-${name}`,
    boot,
  };
  host.pid = await launch(host, boot);
  return host;
}

/**
 * Reboots a host whose disk persists: a clean poweroff (SIGTERM to its nspawn),
 * then the same container again, with the same name, namespace, address and
 * host key; `launched` hears the new pid at once, and it resolves with the
 * new state once the host is `running`.
 */
export async function rebootSystemdHost(
  host: SystemdHostState,
  privateKey: Buffer,
  launched: (pid: number) => void = () => undefined,
): Promise<SystemdHostState> {
  if (!host.boot?.persistentDisk)
    throw new Error(`${host.name} has no persistent disk: a reboot would lose what was deployed (bring the bed up with persistentDisks)`);
  await stopSystemdHost(host);
  const rebooted = { ...host, pid: await launch(host, host.boot) };
  launched(rebooted.pid);
  await waitSystemdHostReady(rebooted, privateKey);
  return rebooted;
}

async function launch(host: Pick<SystemdHostState, "name" | "cgroup" | "machine">, boot: SystemdBoot): Promise<number> {
  const { name, cgroup, machine } = host;
  const { dir } = boot;
  const nspawn = [
    "systemd-nspawn",
    "-D",
    boot.rootfs,
    "--boot",
    "--register=no",
    "--keep-unit",
    "--volatile=overlay",
    "-M",
    machine,
    `--hostname=${name}`,
    `--network-namespace-path=/run/netns/${boot.netns}`,
    `--bind-ro=${boot.hostKeyPath}:/etc/ssh/ssh_host_ed25519_key`,
    `--bind-ro=${dir}/authorized_keys:/root/.ssh/authorized_keys`,
    ...(boot.persistentDisk ? Object.entries(PERSISTENT).map(([kept, path]) => `--bind=${dir}/disk/${kept}:${path}`) : []),
    "--console=read-only",
  ];
  const pid = spawnDetached("sh", [IN_CGROUP, createCgroup(cgroup).join(":"), ...nspawn], `${dir}/console.log`);
  // A teardown that starts before the move into the cgroups would miss the container.
  await waitFor(
    `${name} to enter its cgroups`,
    () => {
      if (!isAlive(pid)) throw new GiveUp(`systemd-nspawn for ${name} exited; see ${dir}/console.log`);
      return isInCgroup(pid, cgroup);
    },
    { timeoutMs: 5_000, intervalMs: 5 },
  );
  return pid;
}

/** Waits until the host's systemd says `running` over SSH; `degraded` fails with the failed units. */
export async function waitSystemdHostReady(host: SystemdHostState, privateKey: Buffer, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const session = await waitFor(
    `sshd on ${host.name} (${host.address})`,
    async () => {
      if (!isAlive(host.pid)) throw new GiveUp(`${host.name}'s container exited during boot`);
      return SshSession.connect(host, { privateKey, connectTimeoutMs: 2_000 });
    },
    { timeoutMs, intervalMs: 100 },
  );
  try {
    // No retry on a dropped session: the drops once seen here were exit statuses lost in ssh2's callback, fixed in SshSession.
    const { stdout } = await session.exec("systemctl is-system-running --wait", undefined, {
      timeoutMs: Math.max(1_000, deadline - Date.now()),
    });
    if (stdout.trim() !== "running") {
      const failed = await session.exec("systemctl --failed --no-legend --plain");
      throw new Error(`${host.name} booted ${stdout.trim()}: ${failed.stdout.trim()}`);
    }
  } finally {
    session.close();
  }
}

/**
 * Powers the container off with SIGTERM to the nspawn we started. A container
 * that has only just booted can drop the signal, so it is resent; whatever is
 * left at the deadline is killed through its cgroups.
 */
export async function stopSystemdHost(host: Pick<SystemdHostState, "pid" | "cgroup" | "machine">, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(host.pid) && Date.now() < deadline) {
    try {
      process.kill(host.pid, "SIGTERM");
    } catch {
      break;
    }
    const resendAt = Date.now() + 2_000;
    while (isAlive(host.pid) && Date.now() < resendAt) await sleep(50);
  }
  await destroyCgroup(host.cgroup);
  rmSync(`/run/systemd/nspawn/propagate/${host.machine}`, { recursive: true, force: true });
}
