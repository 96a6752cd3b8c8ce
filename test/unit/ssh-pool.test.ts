import type { AddressInfo } from "node:net";
import { Server, utils, type Connection } from "ssh2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSettings, operatorSettings } from "../../src/config/settings.js";
import type { HostConnections } from "../../src/remote/connections.js";
import { openPerLease, requirePinnedKey, SshPool, targetIdentity } from "../../src/remote/ssh-pool.js";
import type { SshTarget } from "../../src/remote/ssh-session.js";

/**
 * The pool against an in-process SSH server on loopback (ssh2's own), which
 * counts the connections it accepts: what is reused, kept and closed shows
 * there. sshd and real hosts: test/integration/warm-pool.test.ts.
 */
describe("host connections", () => {
  const hostKey = utils.generateKeyPairSync("ed25519");
  const clientKey = utils.generateKeyPairSync("ed25519");
  const open = new Set<Connection>();
  let accepted = 0;
  const server = new Server({ hostKeys: [hostKey.private] }, (client) => {
    accepted++;
    open.add(client);
    client.on("authentication", (context) => context.accept());
    client.on("error", () => undefined);
    client.on("close", () => open.delete(client));
  });
  const ssh = { privateKey: clientKey.private, connectTimeoutMs: 5_000 };
  let target: SshTarget;
  const pools: HostConnections[] = [];
  const pool = (idleMs: number, maxIdle?: number) => {
    const made = new SshPool(ssh, { idleMs, maxIdle });
    pools.push(made);
    return made;
  };

  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    target = { name: "web01", address: "127.0.0.1", port: (server.address() as AddressInfo).port, user: "root", hostKey: [hostKey.public] };
  });
  afterAll(async () => {
    for (const made of pools) made.close();
    for (const client of open) client.end();
    await new Promise((resolve) => server.close(resolve));
  });

  it("refuses a host with no pinned key before connecting to it", async () => {
    const before = accepted;
    const unpinned = { ...target, hostKey: [] };
    expect(() => requirePinnedKey(unpinned)).toThrow(expect.objectContaining({ code: "HOST_KEY_UNKNOWN" }));
    expect(() => requirePinnedKey(target)).not.toThrow();
    await expect(openPerLease(ssh).lease(unpinned)).rejects.toMatchObject({ code: "HOST_KEY_UNKNOWN" });
    await expect(pool(60_000).lease(unpinned)).rejects.toMatchObject({ code: "HOST_KEY_UNKNOWN" });
    expect(accepted).toBe(before);
  });

  it("names a target by where it connects and the keys it pins: their order and comments aside", () => {
    const other = utils.generateKeyPairSync("ed25519").public;
    const same = targetIdentity({ ...target, hostKey: [hostKey.public, other] });
    expect(targetIdentity({ ...target, hostKey: [`${other} a comment`, `  ${hostKey.public}`] })).toBe(same);
    expect(targetIdentity({ ...target, hostKey: hostKey.public })).toBe(targetIdentity(target));
    for (const changed of [
      { hostKey: [hostKey.public] },
      { hostKey: [other] },
      { name: "web02" },
      { address: "127.0.0.2" },
      { port: target.port + 1 },
      { user: "deploy" },
    ])
      expect(targetIdentity({ ...target, hostKey: [hostKey.public, other], ...changed })).not.toBe(same);
  });

  it("opens a connection per lease for the CLI, and closes it when it comes back", async () => {
    const connections = openPerLease(ssh);
    const before = accepted;
    const first = await connections.lease(target);
    expect(first.reused).toBe(false);
    first.release(true);
    await until(() => !first.session.alive);
    const second = await connections.lease(target);
    expect(second.reused).toBe(false);
    second.release(true);
    expect(accepted - before).toBe(2);
  });

  it("lends a kept connection again, one lease at a time, and keeps one per target", async () => {
    const connections = pool(60_000);
    const before = accepted;
    const first = await connections.lease(target);
    first.release(true);
    const again = await connections.lease(target);
    expect(again).toMatchObject({ reused: true, session: first.session });
    // Out on a lease: a second lease for the same target gets its own.
    const alongside = await connections.lease(target);
    expect(alongside).toMatchObject({ reused: false });
    expect(alongside.session).not.toBe(again.session);
    again.release(true);
    alongside.release(true);
    await until(() => !alongside.session.alive);
    const last = await connections.lease(target);
    expect(last.session).toBe(again.session);
    last.release(false);
    expect(accepted - before).toBe(2);
  });

  it("opens a new connection when asked for a fresh one, for a dead one, after release(false), and for a changed pinned key", async () => {
    const connections = pool(60_000);
    const before = accepted;
    const kept = await connections.lease(target);
    kept.release(true);
    const fresh = await connections.lease(target, { fresh: true });
    expect(fresh.reused).toBe(false);
    fresh.release(false);
    const reused = await connections.lease(target);
    expect(reused.session).toBe(kept.session);
    reused.release(true);
    // The host ends the connection while it waits (sshd restarted).
    for (const client of open) client.end();
    await until(() => !kept.session.alive);
    const replaced = await connections.lease(target);
    expect(replaced.reused).toBe(false);
    replaced.release(true);
    const rekeyed = await connections.lease({ ...target, hostKey: [hostKey.public, utils.generateKeyPairSync("ed25519").public] });
    expect(rekeyed.reused).toBe(false);
    expect(rekeyed.session).not.toBe(replaced.session);
    rekeyed.release(true);
    expect(accepted - before).toBe(4);
  });

  it("closes a connection idle for idleMs, the oldest beyond maxIdle, every idle one on close(), and later returns", async () => {
    const idle = pool(50);
    const short = await idle.lease(target);
    short.release(true);
    await until(() => !short.session.alive);

    const bounded = pool(60_000, 1);
    const [web01, web02] = await Promise.all([bounded.lease(target), bounded.lease({ ...target, name: "web02" })]);
    web01.release(true);
    web02.release(true);
    await until(() => !web01.session.alive);
    expect(web02.session.alive).toBe(true);

    const out = await bounded.lease(target);
    bounded.close();
    await until(() => !web02.session.alive);
    expect(out.session.alive).toBe(true);
    out.release(true);
    await until(() => !out.session.alive);
  });

  it("keeps nothing with idleMs 0", async () => {
    const connections = pool(0);
    const first = await connections.lease(target);
    first.release(true);
    await until(() => !first.session.alive);
    const second = await connections.lease(target);
    expect(second.reused).toBe(false);
    second.release(true);
  });

  it("reads TIDEMARK_SSH_IDLE: whole seconds, 0 or more, 600 by default", () => {
    const base = { repo: "http://x/r.git", redis: "redis://h" };
    const serve = (env: NodeJS.ProcessEnv) => operatorSettings(loadSettings(base, { TIDEMARK_SSH_KEY: "/k", ...env }), "worker").sshIdle;
    expect(serve({})).toBe(600);
    expect(serve({ TIDEMARK_SSH_IDLE: "0" })).toBe(0);
    expect(serve({ TIDEMARK_SSH_IDLE: "30" })).toBe(30);
    for (const wrong of ["-1", "1.5", "soon"])
      expect(() => serve({ TIDEMARK_SSH_IDLE: wrong })).toThrow(/sshIdle: .* \(TIDEMARK_SSH_IDLE or sshIdle in the config file\)/);
  });
});

/** Waits for what a connection's other end does (a close reaches this side a moment later). */
async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
