import { mkdirSync } from "node:fs";
import { createCgroup, destroyCgroup } from "./cgroups.js";
import { freePort, greeting } from "./ports.js";
import { GiveUp, isAlive, spawnDetached, waitFor } from "./proc.js";
import { IN_CGROUP } from "./systemd-host.js";

export interface RedisState {
  port: number;
  dir: string;
  cgroup: string;
  aof: boolean;
  pid: number;
}

/**
 * A private redis-server on a loopback port, never the machine's own. Fault
 * tests stop, kill and restart it; with AOF on, a restart keeps the data.
 */
export class BedRedis {
  constructor(private state: RedisState) {}

  static async start(options: { bedId: string; dir: string; aof?: boolean }): Promise<BedRedis> {
    mkdirSync(options.dir, { recursive: true });
    const cgroup = `tidemark-testbed/${options.bedId}/redis`;
    for (let attempt = 1; ; attempt++) {
      const redis = new BedRedis({ port: await freePort(), dir: options.dir, cgroup, aof: options.aof ?? false, pid: 0 });
      try {
        await redis.start();
        return redis;
      } catch (error) {
        if (attempt >= 3 || !(error instanceof GiveUp)) throw error;
      }
    }
  }

  get url(): string {
    return `redis://127.0.0.1:${this.state.port}`;
  }

  get port(): number {
    return this.state.port;
  }

  get snapshot(): RedisState {
    return { ...this.state };
  }

  /** Starts it (again) on the same port and data directory. */
  async start(): Promise<void> {
    const { port, dir, aof, cgroup } = this.state;
    const args = [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      aof ? "yes" : "no",
      "--dir",
      dir,
      "--logfile",
      "",
    ];
    const pid = spawnDetached("sh", [IN_CGROUP, createCgroup(cgroup).join(":"), "redis-server", ...args], `${dir}/redis.log`);
    this.state = { ...this.state, pid };
    await waitFor(
      `redis-server on port ${port}`,
      async () => {
        if (!isAlive(pid)) throw new GiveUp(`redis-server exited; see ${dir}/redis.log`);
        return (await greeting("127.0.0.1", port, "PING\r\n"))?.startsWith("+PONG");
      },
      { timeoutMs: 10_000, intervalMs: 10 },
    );
  }

  /** A clean shutdown (SIGTERM: with AOF on, redis flushes it first). */
  async stop(): Promise<void> {
    await this.signal("SIGTERM");
  }

  /** A crash: SIGKILL, nothing flushed. */
  async kill(): Promise<void> {
    await this.signal("SIGKILL");
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async destroy(): Promise<void> {
    await destroyCgroup(this.state.cgroup);
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const { pid } = this.state;
    if (!isAlive(pid)) return;
    process.kill(pid, signal);
    await waitFor(`redis-server (pid ${pid}) to exit`, () => !isAlive(pid), { timeoutMs: 10_000, intervalMs: 10 });
  }
}
