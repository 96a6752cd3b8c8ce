import net from "node:net";
import { Client, type ClientChannel } from "ssh2";
import { TidemarkError } from "../core/errors.js";
import { Semaphore } from "../core/semaphore.js";
import { formatHostKey, parseHostKey, type HostKey } from "./host-key.js";

export interface SshTarget {
  name: string;
  address: string;
  port: number;
  user: string;
  /** The pinned host key (or keys, from known_hosts); any other key is refused (no trust on first use). */
  hostKey: string | readonly string[];
}

export interface SshOptions {
  /** A private key; without one, the agent at `agent` (an SSH_AUTH_SOCK path) signs. */
  privateKey?: Buffer | string;
  agent?: string;
  /** Limit for the host to answer (TCP and sshd's version line), as ssh's ConnectTimeout. */
  connectTimeoutMs?: number;
  /** Limit for the rest of the handshake once the host answered: a host busy with many logins is slow, not gone. */
  handshakeTimeoutMs?: number;
  keepaliveIntervalMs?: number;
  /** Default limit for one command; a command that runs longer is cut and reported. */
  commandTimeoutMs?: number;
}

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** sshd's MaxSessions is 10 per connection; the host's shell, a tunnel for an HTTP check and a spare keep 3. */
const MAX_EXEC_CHANNELS = 7;

/** One SSH connection to one host; commands run over a bounded number of channels on it. */
export class SshSession {
  private readonly channels = new Semaphore(MAX_EXEC_CHANNELS);
  private closedBecause: Error | undefined;

  private constructor(
    readonly target: SshTarget,
    private readonly client: Client,
    private readonly commandTimeoutMs: number,
  ) {
    client.on("close", () => (this.closedBecause ??= new Error("the connection closed")));
    client.on("error", (error) => (this.closedBecause ??= error));
  }

  static async connect(target: SshTarget, options: SshOptions): Promise<SshSession> {
    const pinned = (typeof target.hostKey === "string" ? [target.hostKey] : target.hostKey).map(parseHostKey);
    const client = new Client();
    let offered: Buffer | undefined;
    const timeoutMs = options.connectTimeoutMs ?? 10_000;
    const handshakeMs = options.handshakeTimeoutMs ?? 60_000;
    // Our own socket with Nagle off: ssh2's default socket adds ~40 ms to every round trip.
    const socket = net.connect({ host: target.address, port: target.port });
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      let timer = setTimeout(() => fail(new Error(`no answer from sshd within ${timeoutMs} ms`)), timeoutMs);
      const fail = (error: unknown) => {
        clearTimeout(timer);
        client.end();
        socket.destroy();
        reject(connectError(target, error, pinned, offered));
      };
      client.once("ready", () => {
        clearTimeout(timer);
        client.removeListener("error", fail);
        socket.removeListener("error", fail);
        resolve();
      });
      // Not `once`: a connection reset before the handshake makes ssh2 emit a second error ("Connection lost before handshake"),
      // and an error with no listener left would end the whole operator.
      client.on("error", fail);
      socket.on("error", fail);
      client.connect({
        sock: socket,
        username: target.user,
        privateKey: options.privateKey,
        agent: options.privateKey === undefined ? options.agent : undefined,
        readyTimeout: 0,
        keepaliveInterval: options.keepaliveIntervalMs ?? 5_000,
        keepaliveCountMax: 3,
        // Ask for the pinned key's type, so a host with several keys shows the one we know.
        algorithms: { serverHostKey: pinned.flatMap((key) => HOST_KEY_ALGORITHMS[key.type] ?? [key.type]) as never },
        hostVerifier: (key: Buffer) => {
          offered = key;
          return pinned.some((known) => key.equals(known.blob));
        },
      });
      // Beside ssh2's own listener (attached by connect): the host's first bytes start the handshake's own limit.
      socket.once("data", () => {
        clearTimeout(timer);
        timer = setTimeout(
          () => fail(new Error(`the host answered but the SSH handshake did not end within ${handshakeMs} ms`)),
          handshakeMs,
        );
      });
    });
    return new SshSession(target, client, options.commandTimeoutMs ?? 300_000);
  }

  /** Runs one command line (built by a pure builder that quoted every word), feeding `input` to its stdin. */
  async exec(commandLine: string, input?: string | Buffer, { timeoutMs = this.commandTimeoutMs } = {}): Promise<ExecResult> {
    return this.channels.run(async () => {
      const collecting = await this.openExec(commandLine, (channel) =>
        collect(
          channel,
          input,
          timeoutMs,
          () =>
            new TidemarkError(
              "SSH_COMMAND_TIMEOUT",
              `${this.target.name}: a command ran longer than ${Math.round(timeoutMs / 1000)} s and was cut`,
              "check the host's load, or raise the timeout",
            ),
        ),
      );
      try {
        return await collecting.result;
      } catch (error) {
        if (!(error instanceof TidemarkError) || error.code !== "SSH_CONNECTION_LOST") throw error;
        // The channel closes before the connection says why: give it a moment, then name the cause.
        await new Promise((resolve) => setTimeout(resolve, 20));
        throw new TidemarkError(
          error.code,
          `${this.target.name}: ${error.message}${this.closedBecause ? ` (${this.closedBecause.message})` : " (the connection itself is still open: the command's session was ended on the host)"}`,
          error.hint,
          { cause: this.closedBecause ?? error },
        );
      }
    });
  }

  /**
   * Starts a command that runs as long as the connection lives, outside the
   * channel budget; resolves once it printed `ready` on stdout, and returns
   * what it printed on failure. Used for the host lock.
   */
  async hold(commandLine: string, ready: string): Promise<{ held: true } | { held: false; result: ExecResult }> {
    const holding = await this.openExec(
      commandLine,
      (channel) =>
        new Promise<{ held: true } | { held: false; result: ExecResult }>((resolve) => {
          let stdout = "";
          let stderr = "";
          let code: number | null = null;
          channel.on("data", (chunk: Buffer) => {
            stdout += chunk.toString();
            if (stdout.includes(ready)) resolve({ held: true });
          });
          channel.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
          channel.on("exit", (exitCode: number | null) => (code = exitCode));
          channel.on("close", () => resolve({ held: false, result: { code, signal: null, stdout, stderr } }));
        }),
    );
    return holding.result;
  }

  /**
   * Starts a command that lives as long as its caller wants (the host's
   * shell), outside the channel budget; `use` gets the channel inside ssh2's
   * callback, so it hears an exit that came with the exec reply.
   */
  async start<T>(commandLine: string, use: (channel: ClientChannel) => T): Promise<T> {
    return (await this.openExec(commandLine, (channel) => Promise.resolve(use(channel)))).result;
  }

  /** Why the connection closed, once it did. */
  get closedReason(): Error | undefined {
    return this.closedBecause;
  }

  /** A TCP connection from the host to one of its own ports, tunnelled through SSH (for HTTP checks). */
  forward(port: number, host = "127.0.0.1"): Promise<ClientChannel> {
    return this.channels.run(
      () =>
        new Promise((resolve, reject) => {
          this.client.forwardOut("127.0.0.1", 0, host, port, (error, stream) =>
            error ? reject(this.channelError(error)) : resolve(stream),
          );
        }),
    );
  }

  get alive(): boolean {
    return this.closedBecause === undefined;
  }

  close(): void {
    this.client.end();
  }

  /**
   * Opens an exec channel and hands it to `use` inside ssh2's callback: ssh2
   * emits `exit` as it reads it, and an exit status that came in the same read
   * as the exec reply is gone by the time an awaiting caller would listen
   * (a fast command then looks like a dropped session).
   */
  private async openExec<T>(commandLine: string, use: (channel: ClientChannel) => Promise<T>): Promise<{ result: Promise<T> }> {
    try {
      // Wrapped, so that the outer promise does not adopt `use`'s: its errors are the command's, not the channel's.
      return await new Promise<{ result: Promise<T> }>((resolve, reject) => {
        if (this.closedBecause) return reject(this.closedBecause);
        this.client.exec(commandLine, (error, channel) => (error ? reject(error) : resolve({ result: use(channel) })));
      });
    } catch (error) {
      throw await this.channelFailure(error as Error);
    }
  }

  /**
   * Why a channel could not be opened: a connection that went away (ssh2 says
   * only "Unable to exec" when it closes mid-request; it says why a moment
   * later) is a lost connection, not a host that refuses sessions.
   */
  private async channelFailure(error: Error): Promise<TidemarkError> {
    if (!this.closedBecause) await new Promise((resolve) => setTimeout(resolve, 20));
    if (this.closedBecause) {
      return new TidemarkError(
        "SSH_CONNECTION_LOST",
        `${this.target.name}: the connection was lost before a command could start (${this.closedBecause.message})`,
        "check the host and the network; run the deployment again: every step is idempotent",
        { cause: this.closedBecause },
      );
    }
    return this.channelError(error);
  }

  private channelError(error: Error): TidemarkError {
    return new TidemarkError(
      "SSH_CHANNEL",
      `${this.target.name}: ${error.message}`,
      "check that the host is up and that sshd allows sessions (MaxSessions)",
      { cause: error },
    );
  }
}

function collect(
  channel: ClientChannel,
  input: string | Buffer | undefined,
  timeoutMs: number,
  timeoutError: () => Error,
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let code: number | null = null;
    let signal: string | null = null;
    const timer = setTimeout(() => {
      channel.close();
      reject(timeoutError());
    }, timeoutMs);
    channel.on("data", (chunk: Buffer) => stdout.push(chunk));
    channel.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    channel.on("exit", (exitCode: number | null, exitSignal?: string) => {
      code = exitCode;
      signal = exitSignal ?? null;
    });
    channel.on("close", () => {
      clearTimeout(timer);
      // A channel closed without an exit status is a connection that went away mid-command.
      if (code === null && signal === null)
        reject(
          new TidemarkError(
            "SSH_CONNECTION_LOST",
            "the connection was lost while a command ran",
            "check the host and the network; run the deployment again: every step is idempotent",
          ),
        );
      else resolve({ code, signal, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() });
    });
    channel.end(input);
  });
}

const HOST_KEY_ALGORITHMS: Record<string, string[]> = { "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] };

function connectError(target: SshTarget, error: unknown, pinned: HostKey[], offered: Buffer | undefined): TidemarkError {
  const where = `${target.user}@${target.address}:${target.port}`;
  if (offered !== undefined && !pinned.some((known) => offered.equals(known.blob))) {
    return new TidemarkError(
      "HOST_KEY_MISMATCH",
      `${target.name} (${where}) offered host key ${formatHostKey(offered)}, which is not the pinned key`,
      "if the host was rebuilt on purpose, put its new key in the inventory's hostKey; otherwise treat it as an attack",
      { cause: error },
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new TidemarkError(
    "HOST_UNREACHABLE",
    `${target.name} (${where}): ${message}`,
    "check that the host is up, reachable from the operator, and accepts the operator's key",
    { cause: error },
  );
}
