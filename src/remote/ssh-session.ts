import net from "node:net";
import { Client } from "ssh2";
import { TidemarkError } from "../core/errors.js";
import { formatHostKey, parseHostKey } from "./host-key.js";

export interface SshTarget {
  name: string;
  address: string;
  port: number;
  user: string;
  /** The pinned host key; any other key is refused (no trust on first use). */
  hostKey: string;
}

export interface SshOptions {
  privateKey: Buffer | string;
  connectTimeoutMs?: number;
  keepaliveIntervalMs?: number;
}

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** One SSH connection to one host; commands run over channels on it. */
export class SshSession {
  private constructor(
    readonly target: SshTarget,
    private readonly client: Client,
  ) {}

  static async connect(target: SshTarget, options: SshOptions): Promise<SshSession> {
    const pinned = parseHostKey(target.hostKey);
    const client = new Client();
    let offered: Buffer | undefined;
    const timeoutMs = options.connectTimeoutMs ?? 10_000;
    // Our own socket with Nagle off: ssh2's default socket adds ~40 ms to every round trip.
    const socket = net.connect({ host: target.address, port: target.port });
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      const fail = (error: unknown) => {
        client.end();
        socket.destroy();
        reject(connectError(target, error, pinned.blob, offered));
      };
      client.once("ready", () => resolve());
      client.once("error", fail);
      socket.once("error", fail);
      client.connect({
        sock: socket,
        username: target.user,
        privateKey: options.privateKey,
        readyTimeout: timeoutMs,
        keepaliveInterval: options.keepaliveIntervalMs ?? 5_000,
        keepaliveCountMax: 3,
        hostVerifier: (key: Buffer) => {
          offered = key;
          return key.equals(pinned.blob);
        },
      });
    });
    return new SshSession(target, client);
  }

  /** Runs one command line (already quoted by its builder) and collects its output. */
  exec(commandLine: string, input?: string | Buffer): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      this.client.exec(commandLine, (error, channel) => {
        if (error) return reject(new TidemarkError("SSH_CHANNEL", `${this.target.name}: could not open a channel: ${error.message}`, "check sshd's MaxSessions and that the host is up", { cause: error }));
        const stdout: Buffer[] = [];
        const stderr: Buffer[] = [];
        let code: number | null = null;
        let signal: string | null = null;
        channel.on("data", (chunk: Buffer) => stdout.push(chunk));
        channel.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
        channel.on("exit", (exitCode: number | null, exitSignal?: string) => {
          code = exitCode;
          signal = exitSignal ?? null;
        });
        channel.on("close", () => resolve({ code, signal, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() }));
        channel.end(input);
      });
    });
  }

  close(): void {
    this.client.end();
  }
}

function connectError(target: SshTarget, error: unknown, pinned: Buffer, offered: Buffer | undefined): TidemarkError {
  const where = `${target.user}@${target.address}:${target.port}`;
  if (offered !== undefined && !offered.equals(pinned)) {
    return new TidemarkError(
      "HOST_KEY_MISMATCH",
      `${target.name} (${where}) offered host key ${formatHostKey(offered)}, which is not the pinned key`,
      "if the host was rebuilt on purpose, put its new key in the inventory's hostKey; otherwise treat it as an attack",
      { cause: error },
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new TidemarkError("HOST_UNREACHABLE", `${target.name} (${where}): ${message}`, "check that the host is up, reachable from the operator, and accepts the operator's key", { cause: error });
}
