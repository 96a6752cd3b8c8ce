import { spawn, type ChildProcess } from "node:child_process";
import { GiveUp, waitFor } from "../bed/proc.js";

const CLI = new URL("./tidemark-process.ts", import.meta.url).pathname;

/** One JSON log line of the operator. */
export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

const running = new Set<OperatorProcess>();

/**
 * `tidemark serve` or `tidemark worker` as a child process, as it runs in
 * production: its JSON log lines are collected for the test to wait on.
 */
export class OperatorProcess {
  readonly lines: LogLine[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  url = "";
  private stderr = "";

  private constructor(
    readonly role: "serve" | "worker",
    private readonly child: ChildProcess,
  ) {
    let buffered = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) if (line.startsWith("{")) this.lines.push(JSON.parse(line) as LogLine);
    });
    child.stderr!.on("data", (chunk: Buffer) => (this.stderr += chunk.toString()));
    // "close": what it printed last is read by then.
    this.exited = new Promise((resolve) => child.on("close", (code, signal) => resolve({ code, signal })));
    void this.exited.then(() => running.delete(this));
  }

  /** Starts it and waits for its "started" line (or its exit, with what it printed). */
  static async start(role: "serve" | "worker", env: NodeJS.ProcessEnv, args: string[] = []): Promise<OperatorProcess> {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, role, ...args], {
      env: { PATH: process.env.PATH, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const operator = new OperatorProcess(role, child);
    running.add(operator);
    const started = await operator.waitForLog((line) => line.msg === `tidemark ${role} started`, 30_000);
    operator.url = typeof started.url === "string" ? started.url : "";
    return operator;
  }

  /** True once the process has exited. */
  get dead(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  get pid(): number {
    return this.child.pid!;
  }

  get output(): string {
    return `${this.lines.map((line) => JSON.stringify(line)).join("\n")}\n${this.stderr}`;
  }

  /** Waits for a log line (from line `since` on); fails early, with the output, if the process exits first. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs = 30_000, since = 0): Promise<LogLine> {
    let exited = false;
    void this.exited.then(() => (exited = true));
    return waitFor(
      `a log line of tidemark ${this.role} (pid ${this.pid})`,
      () => {
        const line = this.lines.slice(since).find(match);
        if (line) return line;
        if (exited) throw new GiveUp(`tidemark ${this.role} exited first:\n${this.output}`);
        return undefined;
      },
      { timeoutMs, intervalMs: 20 },
    );
  }

  logs(match: (line: LogLine) => boolean): LogLine[] {
    return this.lines.filter(match);
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
  async stop(graceMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.kill("SIGTERM");
    const timer = setTimeout(() => this.kill("SIGKILL"), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills every operator process a test started and has not stopped: for afterAll, also after a failure. */
  static async stopAll(): Promise<void> {
    await Promise.all([...running].map((operator) => operator.stop(5000)));
  }
}
