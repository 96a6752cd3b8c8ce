import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SshSession } from "../../src/remote/ssh-session.js";
import { command } from "../../src/remote/shell.js";
import { TestBed } from "../bed/bed.js";
import { waitFor } from "../bed/proc.js";
import { TcpProxy } from "../bed/tcp-proxy.js";

/** A unit file as a host would carry it. */
const unit = (execStart: string) => `[Unit]\nDescription=test bed unit\n\n[Service]\nExecStart=${execStart}\n`;

describe("systemd hosts of the test bed", () => {
  let bed: TestBed;
  const sessions: SshSession[] = [];

  beforeAll(async () => {
    bed = await TestBed.up({ systemdHosts: 3 });
  });

  afterAll(async () => {
    for (const session of sessions) session.close();
    await bed?.down();
  });

  async function connect(name: string): Promise<SshSession> {
    const session = await SshSession.connect(bed.host(name), { privateKey: bed.clientKey });
    sessions.push(session);
    return session;
  }

  async function show(session: SshSession, unitName: string): Promise<Record<string, string>> {
    const { stdout } = await session.exec(command("systemctl", "show", "-p", "ActiveState,Result", unitName));
    return Object.fromEntries(
      stdout
        .trim()
        .split("\n")
        .map((line) => line.split("=", 2) as [string, string]),
    );
  }

  it("boots three hosts, each with its own name, address and machine id", async () => {
    const seen = await Promise.all(
      bed.hosts.map(async (host) => {
        const { stdout } = await (await connect(host.name)).exec("hostname; cat /etc/machine-id; systemctl is-system-running");
        return stdout.trim().split("\n");
      }),
    );
    expect(seen.map(([name]) => name)).toEqual(["web01", "web02", "web03"]);
    expect(new Set(seen.map(([, id]) => id)).size).toBe(3);
    expect(seen.map(([, , state]) => state)).toEqual(["running", "running", "running"]);
    expect(new Set(bed.hosts.map((host) => host.address)).size).toBe(3);
  });

  it("never loses the exit status of a fast command (it once came in the same read as the exec reply)", async () => {
    // 200 quick commands per host, three hosts at once: a lost exit status showed as SSH_CONNECTION_LOST in a few percent of them.
    const codes = await Promise.all(
      bed.hosts.map(async (host) => {
        const session = await connect(host.name);
        const seen: Array<number | null> = [];
        for (let i = 0; i < 200; i++) seen.push((await session.exec("exit 3")).code);
        return seen;
      }),
    );
    expect(codes.flat().filter((code) => code !== 3)).toEqual([]);
  });

  it("runs a unit that succeeds and one that fails, and reads ActiveState and Result back", async () => {
    const session = await connect("web02");
    const install = [
      `printf %s ${command(unit("/bin/sleep infinity"))} > /etc/systemd/system/good.service`,
      `printf %s ${command(unit("/bin/sh -c 'exit 1'"))} > /etc/systemd/system/bad.service`,
      "systemctl daemon-reload",
      "systemctl start good.service bad.service",
    ].join(" && ");
    expect((await session.exec(install)).code).toBe(0);

    // A plain unit that exits 1 still starts "successfully": its failure shows only afterwards.
    await waitFor("bad.service to fail", async () => (await show(session, "bad.service")).ActiveState === "failed");
    expect(await show(session, "bad.service")).toEqual({ ActiveState: "failed", Result: "exit-code" });
    expect(await show(session, "good.service")).toEqual({ ActiveState: "active", Result: "success" });
    expect((await session.exec("systemctl is-failed bad.service")).stdout.trim()).toBe("failed");

    // Fixed and restarted, it comes back.
    const fix = `printf %s ${command(unit("/bin/sleep infinity"))} > /etc/systemd/system/bad.service && systemctl daemon-reload && systemctl reset-failed bad.service && systemctl restart bad.service`;
    expect((await session.exec(fix)).code).toBe(0);
    expect(await show(session, "bad.service")).toEqual({ ActiveState: "active", Result: "success" });

    // The other hosts are separate machines: they never saw these units.
    const other = await connect("web01");
    expect((await other.exec("systemctl cat bad.service")).code).not.toBe(0);
  });

  it("calls a connection cut by the network lost, whether a command was opening or running, not a host refusing sessions", async () => {
    const web01 = bed.host("web01");
    const proxy = await TcpProxy.start(web01);
    try {
      const connectCut = async () => {
        proxy.restore();
        const session = await SshSession.connect({ ...web01, address: "127.0.0.1", port: proxy.port }, { privateKey: bed.clientKey });
        sessions.push(session);
        return session;
      };
      const lost = { code: "SSH_CONNECTION_LOST", message: expect.stringContaining("the connection was lost") as string };
      // Cut while the channel is being opened: ssh2 says only "Unable to exec" (seen as a MaxSessions hint after a cut mid-deployment).
      const opening = await connectCut();
      const starts = opening.exec("true");
      proxy.cut();
      await expect(starts).rejects.toMatchObject(lost);
      await expect(opening.exec("true")).rejects.toMatchObject(lost);
      const running = await connectCut();
      const sleeps = running.exec("sleep 30");
      await new Promise((resolve) => setTimeout(resolve, 300));
      proxy.cut();
      await expect(sleeps).rejects.toMatchObject(lost);
    } finally {
      await proxy.close();
    }
  });

  it("calls a connection reset before the handshake unreachable, and the process lives on", async () => {
    // ssh2 reports such a reset twice (ECONNRESET, then "Connection lost before handshake"): the second once crashed the operator.
    const server = net.createServer((socket) => socket.once("data", () => socket.resetAndDestroy()));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    try {
      const { port } = server.address() as net.AddressInfo;
      await expect(
        SshSession.connect({ ...bed.host("web01"), address: "127.0.0.1", port }, { privateKey: bed.clientKey }),
      ).rejects.toMatchObject({ code: "HOST_UNREACHABLE" });
      // The second error comes with the socket's close.
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      server.close();
    }
  });

  it("refuses a host whose key is not the pinned one, naming the key it offered", async () => {
    const web01 = bed.host("web01");
    const impostor = { ...web01, hostKey: bed.host("web02").hostKey };
    await expect(SshSession.connect(impostor, { privateKey: bed.clientKey })).rejects.toMatchObject({
      code: "HOST_KEY_MISMATCH",
      message: expect.stringContaining(web01.hostKey) as string,
    });
  });
});
