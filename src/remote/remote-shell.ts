import { randomBytes } from "node:crypto";
import { StringDecoder } from "node:string_decoder";
import type { ClientChannel } from "ssh2";
import { TidemarkError } from "../core/errors.js";
import type { RemoteUser } from "./commands.js";
import { shellCommand } from "./session-scripts.js";
import type { SshSession } from "./ssh-session.js";

/** A structured line a script printed: `<marker> <kind> <text>`. */
export interface Mark {
  kind: string;
  text: string;
}

export interface ShellReply {
  code: number;
  /** What the script printed on stdout that is not a mark, line by line, blank lines left out. */
  lines: string[];
  marks: Mark[];
  stderr: string;
}

interface Running {
  marker: RegExp;
  onMark: (mark: Mark) => void;
  lines: string[];
  marks: Mark[];
  stdoutCode?: number;
  stderrDone: boolean;
  resolve: (reply: ShellReply) => void;
  reject: (error: Error) => void;
}

/**
 * The host's shell (session-scripts.ts): one exec channel per connection,
 * kept for the connection's life, running one script at a time. Scripts
 * and the file bytes they read travel in the same stream, so a step costs
 * one round trip whatever it carries.
 */
export class RemoteShell {
  private stdout = "";
  private stderr = "";
  private readonly decoders = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
  private running: Running | undefined;
  private ended: { code: number | null } | undefined;

  private constructor(
    private readonly session: SshSession,
    private readonly channel: ClientChannel,
    private readonly marker: string,
  ) {
    channel.on("data", (chunk: Buffer) => this.heard("stdout", chunk));
    channel.stderr.on("data", (chunk: Buffer) => this.heard("stderr", chunk));
    let code: number | null = null;
    channel.on("exit", (exitCode: number | null) => (code = exitCode));
    channel.on("close", () => {
      this.ended = { code };
      // The channel closes before the connection says why: give it a moment, then name the cause.
      setTimeout(() => {
        this.running?.reject(this.endError());
        this.running = undefined;
      }, 20);
    });
  }

  static open(session: SshSession, user: RemoteUser): Promise<RemoteShell> {
    const marker = randomBytes(8).toString("hex");
    return session.start(shellCommand(user, marker), (channel) => new RemoteShell(session, channel, marker));
  }

  get alive(): boolean {
    return this.ended === undefined && this.session.alive;
  }

  /** Ends the shell, and with it the host lock if it held it; the connection stays. */
  close(): void {
    this.channel.close();
  }

  /** Runs one script, `payload` following it on stdin; `onMark` hears each mark as it arrives (phases, for timelines). */
  async run(
    script: string,
    payload: Uint8Array[] = [],
    onMark: (mark: Mark) => void = () => undefined,
    timeoutMs = 300_000,
  ): Promise<ShellReply> {
    if (this.running) throw new Error("the host's shell runs one script at a time");
    if (this.ended) throw this.endError();
    const body = Buffer.from(script);
    const bytes = payload.reduce((sum, chunk) => sum + chunk.length, 0);
    const reply = new Promise<ShellReply>((resolve, reject) => {
      this.running = {
        marker: new RegExp(`^${this.marker} end (\\d+)$`),
        onMark,
        lines: [],
        marks: [],
        stderrDone: false,
        resolve,
        reject,
      };
    });
    const timer = setTimeout(() => {
      this.running?.reject(
        new TidemarkError(
          "SSH_COMMAND_TIMEOUT",
          `${this.session.target.name}: a step ran longer than ${Math.round(timeoutMs / 1000)} s and was cut`,
          "check the host's load, or raise the timeout",
        ),
      );
      this.running = undefined;
      this.close();
    }, timeoutMs);
    try {
      await this.send([Buffer.from(`${body.length} ${bytes}\n`), body, ...payload]);
      return await reply;
    } finally {
      clearTimeout(timer);
    }
  }

  private async send(chunks: Uint8Array[]): Promise<void> {
    for (const chunk of chunks) {
      if (this.ended) return;
      // ssh2 queues what the window does not take yet: wait for it to drain, so a big upload is not all in memory twice.
      if (!this.channel.write(chunk)) await new Promise<void>((resolve) => this.channel.once("drain", resolve).once("close", resolve));
    }
  }

  private heard(stream: "stdout" | "stderr", chunk: Buffer): void {
    this[stream] += this.decoders[stream].write(chunk);
    const running = this.running;
    if (!running) return;
    if (stream === "stderr") {
      const end = new RegExp(`\n${this.marker} end \\d+\n$`).exec(this.stderr);
      if (!end) return;
      this.stderr = this.stderr.slice(0, end.index);
      running.stderrDone = true;
      return this.finish(running);
    }
    let newline: number;
    while ((newline = this.stdout.indexOf("\n")) >= 0) {
      const line = this.stdout.slice(0, newline);
      this.stdout = this.stdout.slice(newline + 1);
      const end = running.marker.exec(line);
      if (end) {
        running.stdoutCode = Number(end[1]);
        return this.finish(running);
      }
      if (line.startsWith(`${this.marker} `)) {
        const rest = line.slice(this.marker.length + 1);
        const space = rest.indexOf(" ");
        const mark = space < 0 ? { kind: rest, text: "" } : { kind: rest.slice(0, space), text: rest.slice(space + 1) };
        running.marks.push(mark);
        running.onMark(mark);
      } else if (line !== "") running.lines.push(line);
    }
  }

  private finish(running: Running): void {
    if (running.stdoutCode === undefined || !running.stderrDone) return;
    const stderr = this.stderr;
    this.stderr = "";
    this.running = undefined;
    running.resolve({ code: running.stdoutCode, lines: running.lines, marks: running.marks, stderr });
  }

  private endError(): TidemarkError {
    const name = this.session.target.name;
    const why = this.session.closedReason;
    // A shell that exited by itself (its exit code came) never started: sudo refused, or no sh.
    if (this.ended?.code !== null && this.ended?.code !== undefined && !why)
      return new TidemarkError(
        "HOST_SHELL_FAILED",
        `${name}: the host's shell ended (exit ${this.ended.code}): ${this.stderr.trim().split("\n").at(-1) || "no message"}`,
        "the login user must be root or have passwordless sudo (sudo -n) for sh; check the host's sudoers",
      );
    return new TidemarkError(
      "SSH_CONNECTION_LOST",
      `${name}: the connection was lost (${why?.message ?? "the host ended the session"})`,
      "check the host and the network; run the deployment again: every step is idempotent",
      ...(why ? [{ cause: why }] : []),
    );
  }
}

/** Each connection's shell, kept with it between deployments. */
const shells = new WeakMap<SshSession, RemoteShell>();

/** The connection's shell: the one a previous deployment left, while alive, or a new one. */
export async function hostShell(session: SshSession, user: RemoteUser): Promise<{ shell: RemoteShell; reused: boolean }> {
  const kept = shells.get(session);
  if (kept?.alive) return { shell: kept, reused: true };
  const shell = await RemoteShell.open(session, user);
  shells.set(session, shell);
  return { shell, reused: false };
}
