import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { BED_CGROUP, cgroupDirs, createCgroup, destroyCgroup } from "./cgroups.js";
import { ForgeClient } from "./forge/client.js";
import { generateKey } from "./keys.js";
import { startLightHost, type LightHostState } from "./light-host.js";
import { createNetwork, destroyNetwork, netnsPrefix, type BedNetwork } from "./network.js";
import { GiveUp, isAlive, run, spawnDetached, waitFor } from "./proc.js";
import { BedRedis, type RedisState } from "./redis.js";
import { ensureRootfs } from "./rootfs.js";
import {
  bootSystemdHost,
  IN_CGROUP,
  rebootSystemdHost,
  stopSystemdHost,
  waitSystemdHostReady,
  type SystemdHostState,
} from "./systemd-host.js";
import type { BedHost } from "./types.js";

export const BEDS = "/run/tidemark-testbed/beds";
const FORGE_MAIN = fileURLToPath(new URL("./forge/main.ts", import.meta.url));

export interface BedOptions {
  /** Hosts with real systemd (nspawn containers), named web01, web02, ... */
  systemdHosts?: number;
  /** Systemd hosts whose /var/lib/tidemark and /etc/systemd/system survive `reboot` (kept in the bed's dir); by default every boot starts clean. */
  persistentDisks?: boolean;
  /** Plain sshd hosts on loopback, named light001, light002, ... */
  lightHosts?: number;
  redis?: boolean | { aof: boolean };
  forge?: boolean;
  /** The process whose death lets the next `gc` remove the bed; null keeps it until `down`. */
  owner?: number | null;
}

interface BedState {
  id: string;
  dir: string;
  owner: number | null;
  createdAt: string;
  clientKey: { privateKeyPath: string; publicKey: string };
  network: BedNetwork | null;
  hosts: Array<SystemdHostState | LightHostState>;
  redis: RedisState | null;
  forge: { url: string; token: string; webhookSecret: string; repo: string; cgroup: string } | null;
}

/** What tests and scripts need to reach the parts (printed by `testbed up`). */
export interface BedInfo {
  id: string;
  hosts: BedHost[];
  clientKey: string;
  knownHosts: string;
  redis: { url: string } | null;
  forge: { url: string; apiUrl: string; cloneUrl: string; pushUrl: string; repo: string; token: string; webhookSecret: string } | null;
}

/**
 * A test bed: hosts, Redis and a forge, all private to one id, brought up
 * together and torn down together, also after a crash (`gcBeds`).
 */
export class TestBed {
  readonly redis: BedRedis | null;
  readonly forge: ForgeClient | null;
  private readonly clientKeyBuffer: Buffer;

  private constructor(private readonly state: BedState) {
    this.redis = state.redis ? new BedRedis(state.redis) : null;
    this.forge = state.forge ? new ForgeClient(state.forge.url, state.forge.token) : null;
    this.clientKeyBuffer = readFileSync(state.clientKey.privateKeyPath);
  }

  static async up(options: BedOptions): Promise<TestBed> {
    const id = randomBytes(3).toString("hex");
    const dir = `${BEDS}/${id}`;
    mkdirSync(dir, { recursive: true });
    const state: BedState = {
      id,
      dir,
      owner: options.owner === undefined ? process.pid : options.owner,
      createdAt: new Date().toISOString(),
      clientKey: { privateKeyPath: "", publicKey: "" },
      network: null,
      hosts: [],
      redis: null,
      forge: null,
    };
    const save = () => writeFileSync(`${dir}/state.json`, JSON.stringify(state, null, 2));
    save();
    try {
      state.clientKey = await generateKey(`${dir}/client_ed25519`, `tidemark-testbed-${id}`);
      save();
      const systemd = options.systemdHosts ?? 0;
      const light = options.lightHosts ?? 0;
      const starting: Array<Promise<unknown>> = [];
      if (systemd > 0) {
        const rootfs = await ensureRootfs();
        await raiseInotifyLimit(systemd);
        state.network = await createNetwork(id);
        save();
        for (let i = 1; i <= systemd; i++) {
          const host = await bootSystemdHost({
            bedId: id,
            bedDir: dir,
            rootfs,
            network: state.network,
            index: i,
            name: `web${String(i).padStart(2, "0")}`,
            authorizedKey: state.clientKey.publicKey,
            persistentDisk: options.persistentDisks ?? false,
          });
          state.hosts.push(host);
          save();
        }
        const key = readFileSync(state.clientKey.privateKeyPath);
        starting.push(...state.hosts.map((host) => waitSystemdHostReady(host as SystemdHostState, key)));
      }
      starting.push(
        inBatches(light, 25, async (i) => {
          state.hosts.push(
            await startLightHost({
              bedId: id,
              bedDir: dir,
              name: `light${String(i).padStart(3, "0")}`,
              authorizedKey: state.clientKey.publicKey,
            }),
          );
          save();
        }),
      );
      if (options.redis) {
        starting.push(
          BedRedis.start({ bedId: id, dir: `${dir}/redis`, aof: typeof options.redis === "object" && options.redis.aof }).then((redis) => {
            state.redis = redis.snapshot;
            save();
          }),
        );
      }
      if (options.forge) {
        starting.push(
          startForgeProcess(id, dir).then((forge) => {
            state.forge = forge;
            save();
          }),
        );
      }
      await Promise.all(starting);
      state.hosts.sort((a, b) => a.name.localeCompare(b.name));
      writeFileSync(
        `${dir}/known_hosts`,
        state.hosts.map((host) => `${host.port === 22 ? host.address : `[${host.address}]:${host.port}`} ${host.hostKey}\n`).join(""),
      );
      save();
      return new TestBed(state);
    } catch (error) {
      await destroyBed(id).catch(() => undefined);
      throw error;
    }
  }

  /** Re-attaches to a bed that `testbed up` left running. */
  static attach(id: string): TestBed {
    return new TestBed(readState(id));
  }

  get id(): string {
    return this.state.id;
  }

  get hosts(): BedHost[] {
    return this.state.hosts.map(({ name, kind, address, port, user, hostKey }) => ({ name, kind, address, port, user, hostKey }));
  }

  host(name: string): BedHost {
    const host = this.hosts.find((candidate) => candidate.name === name);
    if (!host) throw new Error(`the bed has no host ${name}`);
    return host;
  }

  /**
   * Reboots a systemd host of a bed brought up with `persistentDisks`: a clean
   * poweroff, then the same host again (name, address, host key, and what was
   * deployed on its disk); resolves once it is `running` again.
   */
  async reboot(name: string): Promise<void> {
    const i = this.state.hosts.findIndex((host) => host.name === name);
    const host = this.state.hosts[i];
    if (host?.kind !== "systemd") throw new Error(`the bed has no systemd host ${name}`);
    const rebooted = await rebootSystemdHost(host, this.clientKeyBuffer, (pid) => {
      // Teardown must find the new container: its pid is in the state before it is awaited.
      this.state.hosts[i] = { ...host, pid };
      writeFileSync(`${this.state.dir}/state.json`, JSON.stringify(this.state, null, 2));
    });
    this.state.hosts[i] = rebooted;
  }

  /**
   * Runs a command inside a systemd host's container (its mount and pid
   * namespaces, through nsenter), not over SSH: for a look at a host that
   * must not show up in what a benchmark counts there (sshd's log, the bytes).
   */
  async inHost(name: string, args: readonly string[]): Promise<string> {
    const host = this.state.hosts.find((candidate) => candidate.name === name);
    if (host?.kind !== "systemd") throw new Error(`the bed has no systemd host ${name}`);
    const children = readFileSync(`/proc/${host.pid}/task/${host.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    const init = children.find((pid) => readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "systemd");
    if (!init) throw new Error(`${name}'s container runs no systemd (nspawn pid ${host.pid})`);
    return (await run("nsenter", ["-t", init, "-m", "-p", "--", ...args])).stdout;
  }

  /**
   * CPU seconds (user + system) a part of the bed has used so far: a host
   * (its container or its sshd, with everything they started), `forge`,
   * `redis`, or a process started with `spawn`; from cgroup v2's `cpu.stat`.
   */
  cpuSeconds(part: string): number {
    for (const dir of cgroupDirs(`${BED_CGROUP}/${this.id}/${part}`)) {
      try {
        const usage = /^usage_usec (\d+)$/m.exec(readFileSync(`${dir}/cpu.stat`, "utf8"))?.[1];
        if (usage !== undefined) return Number(usage) / 1e6;
      } catch {
        // a v1 hierarchy: no cpu.stat here
      }
    }
    throw new Error(`no cgroup v2 cpu.stat for ${part} of bed ${this.id}`);
  }

  /** A directory of the bed's own, removed with it. */
  get dir(): string {
    return this.state.dir;
  }

  /**
   * Starts a process that belongs to the bed: in a cgroup of its own under the
   * bed's, detached, its output in `<dir>/<name>.log`. `down` (and `testbed
   * down`) ends it with everything else, also if its starter has exited.
   */
  spawn(name: string, cmd: string, args: readonly string[], env: NodeJS.ProcessEnv): { pid: number; log: string } {
    const log = `${this.state.dir}/${name}.log`;
    const pid = spawnDetached("sh", [IN_CGROUP, createCgroup(`tidemark-testbed/${this.id}/${name}`).join(":"), cmd, ...args], log, env);
    return { pid, log };
  }

  get clientKey(): Buffer {
    return this.clientKeyBuffer;
  }

  get clientKeyPath(): string {
    return this.state.clientKey.privateKeyPath;
  }

  get forgeRepo(): string {
    if (!this.state.forge) throw new Error("this bed has no forge");
    return this.state.forge.repo;
  }

  get webhookSecret(): string {
    if (!this.state.forge) throw new Error("this bed has no forge");
    return this.state.forge.webhookSecret;
  }

  describe(): BedInfo {
    const forge = this.state.forge;
    return {
      id: this.id,
      hosts: this.hosts,
      clientKey: this.clientKeyPath,
      knownHosts: `${this.state.dir}/known_hosts`,
      redis: this.redis ? { url: this.redis.url } : null,
      forge:
        forge && this.forge
          ? {
              url: forge.url,
              apiUrl: this.forge.apiUrl,
              cloneUrl: this.forge.cloneUrl(forge.repo),
              pushUrl: this.forge.pushUrl(forge.repo),
              repo: forge.repo,
              token: forge.token,
              webhookSecret: forge.webhookSecret,
            }
          : null,
    };
  }

  async down(): Promise<void> {
    await destroyBed(this.id);
  }
}

/** Tears a bed down from its state and from the names it owns, so a half-started bed goes too. */
export async function destroyBed(id: string): Promise<void> {
  if (!/^[0-9a-f]{6}$/.test(id)) throw new Error(`not a test bed id: ${id}`);
  let state: BedState | undefined;
  try {
    state = readState(id);
  } catch {
    // a bed that died before writing its state still owns its cgroup and namespaces
  }
  const systemdHosts = (state?.hosts ?? []).filter((host): host is SystemdHostState => host.kind === "systemd");
  await Promise.all(systemdHosts.map((host) => stopSystemdHost(host)));
  await destroyCgroup(`tidemark-testbed/${id}`);
  await destroyNetwork(id);
  const propagate = "/run/systemd/nspawn/propagate";
  for (const name of existsSync(propagate) ? readdirSync(propagate) : [])
    if (name.startsWith(netnsPrefix(id))) rmSync(`${propagate}/${name}`, { recursive: true, force: true });
  rmSync(`${BEDS}/${id}`, { recursive: true, force: true });
  await restoreInotifyLimit();
}

export function listBeds(): Array<{ id: string; owner: number | null; createdAt: string; alive: boolean }> {
  if (!existsSync(BEDS)) return [];
  return readdirSync(BEDS).map((id) => {
    try {
      const state = readState(id);
      return { id, owner: state.owner, createdAt: state.createdAt, alive: state.owner === null || isAlive(state.owner) };
    } catch {
      return { id, owner: null, createdAt: "", alive: false };
    }
  });
}

/** Removes beds whose owner died (a killed test run); with `all`, every bed. */
export async function gcBeds({ all = false } = {}): Promise<string[]> {
  const removed: string[] = [];
  for (const bed of listBeds()) {
    if (all || !bed.alive) {
      await destroyBed(bed.id);
      removed.push(bed.id);
    }
  }
  return removed;
}

function readState(id: string): BedState {
  return JSON.parse(readFileSync(`${BEDS}/${id}/state.json`, "utf8")) as BedState;
}

async function startForgeProcess(id: string, dir: string): Promise<NonNullable<BedState["forge"]>> {
  const token = `forge_${randomBytes(16).toString("hex")}`;
  const webhookSecret = randomBytes(20).toString("hex");
  const cgroup = `tidemark-testbed/${id}/forge`;
  const readyFile = `${dir}/forge/ready.json`;
  mkdirSync(`${dir}/forge`, { recursive: true });
  const pid = spawnDetached(
    "sh",
    [
      IN_CGROUP,
      createCgroup(cgroup).join(":"),
      process.execPath,
      "--import",
      "tsx",
      FORGE_MAIN,
      "--dir",
      `${dir}/forge`,
      "--token",
      token,
      "--ready-file",
      readyFile,
    ],
    `${dir}/forge/forge.log`,
  );
  const { port } = await waitFor(
    "the forge to listen",
    () => {
      if (!isAlive(pid)) throw new GiveUp(`the forge exited; see ${dir}/forge/forge.log`);
      return existsSync(readyFile) && (JSON.parse(readFileSync(readyFile, "utf8")) as { port: number });
    },
    { timeoutMs: 30_000, intervalMs: 20 },
  );
  const url = `http://127.0.0.1:${port}`;
  const client = new ForgeClient(url, token);
  const repo = await client.createRepo("acme", "fleet");
  return { url, token, webhookSecret, repo: repo.fullName, cgroup };
}

async function inBatches(count: number, size: number, start: (index: number) => Promise<void>): Promise<void> {
  for (let first = 1; first <= count; first += size) {
    const batch = [];
    for (let i = first; i < first + size && i <= count; i++) batch.push(start(i));
    await Promise.all(batch);
  }
}

const INOTIFY = "/proc/sys/fs/inotify/max_user_instances";
const INOTIFY_SAVED = "/run/tidemark-testbed/inotify.orig";

/** Each container's systemd takes inotify instances; past ~10 containers the default 128 runs out. */
async function raiseInotifyLimit(containers: number): Promise<void> {
  const current = Number(readFileSync(INOTIFY, "utf8"));
  const wanted = 128 + 64 * containers;
  if (current >= wanted) return;
  if (!existsSync(INOTIFY_SAVED)) writeFileSync(INOTIFY_SAVED, String(current));
  await run("sysctl", ["-q", "-w", `fs.inotify.max_user_instances=${wanted}`]);
}

async function restoreInotifyLimit(): Promise<void> {
  if (!existsSync(INOTIFY_SAVED) || listBeds().length > 0) return;
  await run("sysctl", ["-q", "-w", `fs.inotify.max_user_instances=${readFileSync(INOTIFY_SAVED, "utf8").trim()}`]);
  rmSync(INOTIFY_SAVED);
}
