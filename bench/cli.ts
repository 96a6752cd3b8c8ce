import { spawn } from "node:child_process";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "../test/bed/proc.js";
import type { TestBed } from "../test/bed/bed.js";
import type { WorkRepo } from "../test/bed/work-repo.js";

/**
 * What the benchmarks run as users do: the built CLI (`bin/tidemark.js` on
 * `dist/`), and other tools, each as a child process, timed from spawn to exit.
 */
export const BIN = fileURLToPath(new URL("../bin/tidemark.js", import.meta.url));
const SRC = fileURLToPath(new URL("../src/", import.meta.url));
const DIST = fileURLToPath(new URL("../dist/", import.meta.url));

/** Refuses to time a stale build: every `src/**.ts` needs its `dist/**.js`, written after it (bench/main.ts builds first). */
export function assertBuilt(): void {
  const stale: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(join(SRC, dir), { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) {
        const built = join(DIST, path.replace(/\.ts$/, ".js"));
        let builtAt = 0;
        try {
          builtAt = statSync(built).mtimeMs;
        } catch {
          // missing: stale
        }
        if (builtAt < statSync(join(SRC, path)).mtimeMs) stale.push(path);
      }
    }
  };
  walk(".");
  if (stale.length > 0)
    throw new Error(
      `dist/ is older than src/ (${stale.slice(0, 5).join(", ")}${stale.length > 5 ? ", ..." : ""}): run \`npm run build\` (\`npm run bench\` does it first)`,
    );
}

export interface ChildRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit (the `close` of its pipes). */
  ms: number;
  /** Date.now() at spawn and at exit, to place it among other processes' clocks. */
  startedAt: number;
  endedAt: number;
  /** User + system CPU seconds of the process and everything it waited for (with `cpu`). */
  cpuSeconds?: number;
}

/**
 * Runs a command to its exit, timed. With `cpu`, it runs under `sh`, whose
 * `times` then reports the CPU its children used (getrusage of the waited-for
 * children): the command's, and that of every process it waited for.
 */
export function timedRun(
  cmd: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; cpu?: boolean; timeoutMs?: number } = {},
): Promise<ChildRun> {
  const [file, argv] = options.cpu ? ["sh", ["-c", '"$@"; code=$?; times >&3; exit $code', "timed", cmd, ...args]] : [cmd, [...args]];
  const timeoutMs = options.timeoutMs ?? 600_000;
  return new Promise((resolve, reject) => {
    const startedAt = Date.now();
    const begun = performance.now();
    // A process group of its own: a run that hangs is killed with everything it started.
    const child = spawn(file, argv, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ["ignore", "pipe", "pipe", options.cpu ? "pipe" : "ignore"],
      detached: true,
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // gone already
      }
    }, timeoutMs);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const times: Buffer[] = [];
    child.stdout!.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr!.on("data", (chunk: Buffer) => err.push(chunk));
    (child.stdio[3] as NodeJS.ReadableStream | null)?.on("data", (chunk: Buffer) => times.push(chunk));
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (timedOut)
        return reject(
          new Error(
            `${cmd} ${args.join(" ")} ran longer than ${timeoutMs / 1000} s and was killed; it printed:\n${Buffer.concat(err).toString().slice(-4000)}`,
          ),
        );
      const ms = performance.now() - begun;
      const run: ChildRun = {
        code,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        ms,
        startedAt,
        endedAt: Date.now(),
      };
      if (options.cpu) {
        // `times` prints the shell's own user and system time, then its children's: "0m1.480000s 0m0.030000s".
        const children = Buffer.concat(times).toString().trim().split("\n")[1] ?? "";
        const seconds = [...children.matchAll(/(\d+)m([\d.]+)s/g)].map((match) => Number(match[1]) * 60 + Number(match[2]));
        if (seconds.length !== 2)
          return reject(
            new Error(`could not read the CPU time of ${cmd} from sh's times: ${JSON.stringify(Buffer.concat(times).toString())}`),
          );
        run.cpuSeconds = seconds[0]! + seconds[1]!;
      }
      resolve(run);
    });
  });
}

/** Median, min and max of a list of durations, as "1234 ms (1100–1400)". */
export function spread(values: readonly number[], format: (value: number) => string): string {
  if (values.length === 0) return "–";
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted[Math.floor(sorted.length / 2)]!;
  return sorted.length === 1 ? format(middle) : `${format(middle)} (${format(sorted[0]!)}–${format(sorted.at(-1)!)})`;
}

/** Busy CPU seconds of the whole machine so far, every core and process (`/proc/stat`: all but idle and iowait; 100 ticks a second). */
export function machineCpuSeconds(): number {
  const ticks = (/^cpu\s+(.+)$/m.exec(readFileSync("/proc/stat", "utf8"))?.[1] ?? "").split(/\s+/).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = ticks;
  return (user + nice + system + irq + softirq + steal) / 100;
}

/** Commits a root tree (built with git's plumbing, no work tree) on top of the work repo's main, and pushes it; returns the commit. */
export async function commitRoot(work: WorkRepo, root: string, message: string): Promise<string> {
  const git = async (...args: string[]) => (await run("git", args, { cwd: work.dir })).stdout.trim();
  const parent = await git("rev-parse", "--verify", "--quiet", "refs/heads/main").catch(() => "");
  const sha = await git("commit-tree", root, ...(parent ? ["-p", parent] : []), "-m", message);
  await git("update-ref", "refs/heads/main", sha);
  await work.push("main");
  return sha;
}

/** What the CLI needs to deploy to the bed as a user would run it: the forge's repo, a store and mirrors under `dir`, the bed's key. */
export function cliEnv(bed: TestBed, dir: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TIDEMARK_REPO: bed.forge!.cloneUrl(bed.forgeRepo),
    TIDEMARK_STORE: join(dir, "store.git"),
    TIDEMARK_MIRRORS: join(dir, "mirrors"),
    TIDEMARK_SSH_KEY: bed.clientKeyPath,
  };
}

/** An ssh_config as a person would have it for the bed: its client key, host keys pinned, a fresh connection each time. */
export function writeSshConfig(path: string, key: string, knownHosts: string): void {
  const lines = [
    `IdentityFile ${key}`,
    `UserKnownHostsFile ${knownHosts}`,
    "StrictHostKeyChecking yes",
    "BatchMode yes",
    "ControlMaster no",
    "ControlPath none",
  ];
  writeFileSync(path, `${lines.join("\n")}\n`);
}
