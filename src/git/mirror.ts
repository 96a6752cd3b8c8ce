import { createHash } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import git, { Errors } from "isomorphic-git";
import http from "isomorphic-git/http/node";
import { TidemarkError } from "../core/errors.js";
import type { SourceRefs } from "../core/track.js";
import { repoFs } from "./atomic-fs.js";
import { splitCredentials } from "./credentials.js";
import { withLockFile } from "./lock.js";
import { consolidatePacks } from "./packs.js";
import { TreeReader } from "./tree-reader.js";

/** Per mirror: the fetch running now, and the one that starts after it, which every caller in between shares. */
const fetches = new Map<string, { running: Promise<void>; next?: Promise<void> }>();

/**
 * A local bare mirror of the source repo, fetched with isomorphic-git over
 * smart HTTP(S). Trees and blobs are read from its objects, never from a work
 * tree. One fetch at a time per mirror, across processes too.
 */
export class SourceMirror {
  readonly reader: TreeReader;

  private constructor(
    readonly url: string,
    readonly gitdir: string,
    private readonly auth: { username: string; password: string } | undefined,
  ) {
    this.reader = new TreeReader(gitdir);
  }

  /** The mirror of `url` under `cacheDir`, created on first use. */
  static async open(repoUrl: string, cacheDir: string): Promise<SourceMirror> {
    const { url, auth } = splitCredentials(repoUrl);
    if (!/^https?:\/\//.test(url)) {
      throw new TidemarkError(
        "REPO_URL",
        `the source repo must be an http(s) URL, not ${url}`,
        "use the repository's HTTPS clone URL (isomorphic-git speaks smart HTTP only)",
      );
    }
    const gitdir = `${cacheDir}/${createHash("sha256").update(url).digest("hex").slice(0, 16)}.git`;
    if (!existsSync(`${gitdir}/HEAD`)) {
      mkdirSync(gitdir, { recursive: true });
      await git.init({ fs: repoFs(gitdir), gitdir, bare: true });
      await git.addRemote({ fs: repoFs(gitdir), gitdir, remote: "origin", url });
    }
    return new SourceMirror(url, gitdir, auth);
  }

  /**
   * Brings every branch and tag up to date; moved and deleted tags included.
   * What a caller gets is always a fetch that started after its call: a burst
   * of callers shares one fetch instead of queueing one each.
   */
  fetch(): Promise<void> {
    const state = fetches.get(this.gitdir);
    if (!state) return this.start();
    state.next ??= state.running.catch(() => undefined).then(() => this.start());
    return state.next;
  }

  private start(): Promise<void> {
    const running = withLockFile(`${this.gitdir}/tidemark-fetch.lock`, () => this.fetchNow());
    fetches.set(this.gitdir, { running });
    void running
      .catch(() => undefined)
      .then(() => {
        // The shared next fetch has become the running one (start() replaced the entry), or nothing follows.
        if (fetches.get(this.gitdir)?.running === running) fetches.delete(this.gitdir);
      });
    return running;
  }

  private async fetchNow(
    what: { ref?: string; singleBranch: boolean; tags: boolean; prune: boolean; pruneTags: boolean } = {
      singleBranch: false,
      tags: true,
      prune: true,
      pruneTags: true,
    },
  ): Promise<void> {
    try {
      await git.fetch({
        fs: repoFs(this.gitdir),
        http,
        gitdir: this.gitdir,
        url: this.url,
        remote: "origin",
        ...what,
        onAuth: () => this.auth ?? { cancel: true },
      });
    } catch (error) {
      if (error instanceof Errors.NotFoundError && (error.data as { what?: string }).what === "HEAD") {
        // isomorphic-git#1654: it cannot fetch from a repository whose HEAD points nowhere.
        throw new TidemarkError(
          "REPO_NO_HEAD",
          `the source repo ${this.url} has no default branch (its HEAD points to a branch that does not exist)`,
          "set the repository's default branch to an existing branch",
          { cause: error },
        );
      }
      const message =
        error instanceof Errors.UserCanceledError
          ? "it asks for credentials and none were given"
          : error instanceof Error
            ? error.message
            : String(error);
      throw new TidemarkError(
        "REPO_UNREACHABLE",
        `could not fetch ${this.url}: ${message}`,
        "check the URL, the network and the credentials (--repo https://user:token@host/repo.git)",
        { cause: error },
      );
    }
    try {
      await consolidatePacks(this.gitdir);
    } catch (error) {
      throw new TidemarkError(
        "MIRROR_PACKS",
        `could not merge the packs of the mirror in ${this.gitdir}: ${error instanceof Error ? error.message : String(error)}`,
        "check the free space there; the mirror is whole (old packs go only once the merged one is in place)",
        { cause: error },
      );
    }
    await this.reader.notePacks();
  }

  /**
   * Fetches a pull request's head (`refs/pull/<n>/head`, which GitHub keeps
   * for forks too): its objects only, no local ref, so that a pull request
   * never moves what an environment tracks.
   */
  async fetchPullRequest(number: number): Promise<void> {
    await withLockFile(`${this.gitdir}/tidemark-fetch.lock`, () =>
      this.fetchNow({ ref: `refs/pull/${number}/head`, singleBranch: true, tags: false, prune: false, pruneTags: false }),
    );
  }

  /**
   * Points a ref of the source repo at a commit the mirror has: moves a pin
   * tag (force) or adds a commit on top of a branch (fast-forward only: a
   * branch someone pushed to meanwhile is refused, not overwritten).
   */
  async pushRef(remoteRef: string, commit: string, { force }: { force: boolean }): Promise<void> {
    const fs = repoFs(this.gitdir);
    const local = "refs/tidemark/push";
    await git.writeRef({ fs, gitdir: this.gitdir, ref: local, value: commit, force: true });
    try {
      const result = await git.push({
        fs,
        http,
        gitdir: this.gitdir,
        url: this.url,
        ref: local,
        remoteRef,
        force,
        onAuth: () => this.auth ?? { cancel: true },
      });
      if (!result.ok) throw new Error(result.error ?? Object.values(result.refs).find((ref) => !ref.ok)?.error ?? "refused");
    } catch (error) {
      const message =
        error instanceof Errors.UserCanceledError
          ? "it asks for credentials and none were given"
          : error instanceof Error
            ? error.message
            : String(error);
      throw new TidemarkError(
        "REPO_PUSH_FAILED",
        `could not push ${remoteRef} to ${this.url}: ${message}`,
        "check that the credentials in the repo URL may push (a token with Contents: write), and that no one pushed to it meanwhile",
        { cause: error },
      );
    } finally {
      await git.deleteRef({ fs, gitdir: this.gitdir, ref: local }).catch(() => undefined);
    }
  }

  /** Writes a commit into the mirror (to be pushed with pushRef): `tree` on top of `parent`. */
  async writeCommit(tree: string, parent: string, message: string): Promise<string> {
    const author = { name: "Tidemark", email: "tidemark@localhost", timestamp: Math.floor(Date.now() / 1000), timezoneOffset: 0 };
    return git.writeCommit({
      fs: repoFs(this.gitdir),
      gitdir: this.gitdir,
      commit: { tree, parent: [parent], author, committer: author, message },
    });
  }

  /**
   * The mirror's branches and tags, tags peeled to their commits. Read under
   * the fetch lock: a fetch in another process rewrites refs (pruned tags
   * go, moved ones come back), and a listing read across it names refs that are gone.
   */
  refs(): Promise<SourceRefs> {
    return withLockFile(`${this.gitdir}/tidemark-fetch.lock`, () => this.readRefs());
  }

  private async readRefs(): Promise<SourceRefs> {
    const fs = repoFs(this.gitdir);
    const branches = new Map<string, string>();
    for (const name of await git.listBranches({ fs, gitdir: this.gitdir, remote: "origin" })) {
      if (name !== "HEAD") branches.set(name, await git.resolveRef({ fs, gitdir: this.gitdir, ref: `refs/remotes/origin/${name}` }));
    }
    const tags = new Map<string, string>();
    for (const name of await git.listTags({ fs, gitdir: this.gitdir })) {
      tags.set(name, await this.peel(await git.resolveRef({ fs, gitdir: this.gitdir, ref: `refs/tags/${name}` })));
    }
    return { branches, tags };
  }

  /** Resolves a commit sha (or a unique prefix) known to the mirror. */
  async expandCommit(prefix: string): Promise<string | undefined> {
    try {
      return await this.peel(await git.expandOid({ fs: repoFs(this.gitdir), gitdir: this.gitdir, oid: prefix }));
    } catch {
      return undefined;
    }
  }

  private async peel(oid: string): Promise<string> {
    for (;;) {
      const object = await git.readObject({ fs: repoFs(this.gitdir), gitdir: this.gitdir, oid, format: "parsed" });
      if (object.type !== "tag") return oid;
      oid = (object.object as { object: string }).object;
    }
  }
}
