import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { run } from "./proc.js";

const IDENTITY = [
  "-c",
  "user.name=Test Author",
  "-c",
  "user.email=author@example.invalid",
  "-c",
  "commit.gpgsign=false",
  "-c",
  "tag.gpgsign=false",
];

/**
 * A working clone for tests, driven with native git so that pushes reach the
 * forge exactly as a person's would: `await repo.commit({ "web01/nginx/conf": "v1" })`.
 */
export class WorkRepo {
  private constructor(readonly dir: string) {}

  static async create(remote: string): Promise<WorkRepo> {
    const dir = mkdtempSync(join(tmpdir(), "tidemark-work-"));
    await run("git", ["init", "--quiet", "--initial-branch=main", dir]);
    const repo = new WorkRepo(dir);
    await repo.git("remote", "add", "origin", remote);
    return repo;
  }

  /** Writes (or with null, deletes) files, commits them, and returns the commit sha; `executable` paths get mode 100755. */
  async commit(files: Record<string, string | Buffer | null>, message = "change", { executable = [] as string[] } = {}): Promise<string> {
    for (const [path, content] of Object.entries(files)) {
      const full = join(this.dir, path);
      if (content === null) rmSync(full, { force: true });
      else {
        mkdirSync(dirname(full), { recursive: true });
        writeFileSync(full, content, { mode: executable.includes(path) ? 0o755 : 0o644 });
        chmodSync(full, executable.includes(path) ? 0o755 : 0o644);
      }
    }
    await this.git("add", "--all");
    await this.git("commit", "--quiet", "--allow-empty", "-m", message);
    return this.head();
  }

  async head(): Promise<string> {
    return (await this.git("rev-parse", "HEAD")).trim();
  }

  async tag(name: string, { force = false, annotated = false, at = "HEAD" } = {}): Promise<void> {
    await this.git("tag", ...(force ? ["-f"] : []), ...(annotated ? ["-a", "-m", name] : []), name, at);
  }

  async push(...refspecs: string[]): Promise<void> {
    await this.git("push", "--quiet", "origin", ...refspecs);
  }

  git(...args: string[]): Promise<string> {
    // Never wait on a credentials prompt: a refused push must fail, not hang.
    return run("git", [...IDENTITY, ...args], { cwd: this.dir, env: { ...process.env, GIT_TERMINAL_PROMPT: "0" } }).then(
      (result) => result.stdout,
    );
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
