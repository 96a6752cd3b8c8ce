import { mkdirSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "../proc.js";

export interface ForgeRepo {
  id: number;
  owner: string;
  name: string;
  fullName: string;
  defaultBranch: string;
  private: boolean;
  createdAt: number;
  gitDir: string;
}

const HOOK = fileURLToPath(new URL("./post-receive.mjs", import.meta.url));
const NAME = /^[A-Za-z0-9_.-]+$/;

/** The forge's bare repositories, served under /OWNER/NAME.git like GitHub. */
export class Repos {
  private readonly byName = new Map<string, ForgeRepo>();
  private nextId = 1_000;

  constructor(readonly root: string) {
    mkdirSync(root, { recursive: true });
  }

  async create(owner: string, name: string, options: { defaultBranch?: string; private?: boolean } = {}): Promise<ForgeRepo> {
    if (!NAME.test(owner) || !NAME.test(name)) throw new Error(`invalid repository name ${owner}/${name}`);
    const fullName = `${owner}/${name}`;
    const existing = this.byName.get(fullName);
    if (existing) return existing;
    const gitDir = join(this.root, owner, `${name}.git`);
    const defaultBranch = options.defaultBranch ?? "main";
    await run("git", ["init", "--quiet", "--bare", `--initial-branch=${defaultBranch}`, gitDir]);
    await run("git", ["-C", gitDir, "config", "http.receivepack", "true"]);
    // refs/pull/* are the forge's to write, as on GitHub, which refuses pushes to them.
    await run("git", ["-C", gitDir, "config", "receive.hideRefs", "refs/pull"]);
    writeFileSync(join(gitDir, "hooks", "post-receive"), `#!/bin/sh\nexec node ${HOOK}\n`, { mode: 0o755 });
    const repo: ForgeRepo = {
      id: this.nextId++,
      owner,
      name,
      fullName,
      defaultBranch,
      private: options.private ?? false,
      createdAt: Math.floor(Date.now() / 1000),
      gitDir: realpathSync(gitDir),
    };
    this.byName.set(fullName, repo);
    return repo;
  }

  get(owner: string, name: string): ForgeRepo | undefined {
    return this.byName.get(`${owner}/${name}`);
  }

  /** The repository "owner/name"; throws if there is none. */
  named(fullName: string): ForgeRepo {
    const repo = this.byName.get(fullName);
    if (!repo) throw new Error(`no repository ${fullName}`);
    return repo;
  }

  byGitDir(gitDir: string): ForgeRepo | undefined {
    const real = realpathSync(gitDir);
    return [...this.byName.values()].find((repo) => repo.gitDir === real);
  }
}

export async function git(repo: ForgeRepo, ...args: string[]): Promise<string> {
  return (await run("git", ["--git-dir", repo.gitDir, ...args])).stdout;
}

/** Resolves a ref or sha to a commit sha, or undefined if the repository has no such commit. */
export async function resolveCommit(repo: ForgeRepo, ref: string): Promise<string | undefined> {
  const { stdout, code } = await run("git", ["--git-dir", repo.gitDir, "rev-parse", "--verify", "--quiet", `${ref}^{commit}`], {
    allowFailure: true,
  });
  return code === 0 ? stdout.trim() : undefined;
}
