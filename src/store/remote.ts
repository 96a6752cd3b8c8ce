import git, { Errors } from "isomorphic-git";
import http from "isomorphic-git/http/node";
import { TidemarkError } from "../core/errors.js";
import { repoFs } from "../git/atomic-fs.js";
import { splitCredentials } from "../git/credentials.js";

const REMOTE = "shared";
const DEFAULT_BRANCH = "refs/heads/main";
const IDENTITY = { name: "Tidemark", email: "tidemark@localhost", timestamp: 0, timezoneOffset: 0 };
const README = `# Tidemark store

This repository is a Tidemark store shared by several workers. The history
of each environment is in \`refs/tidemark/envs/<environment>\`:

    git fetch origin 'refs/tidemark/*:refs/tidemark/*'
    git log refs/tidemark/envs/production

This branch only exists so that the repository has a default branch.
`;

/**
 * The git remote that several workers share their store through. It holds one
 * ref per environment, `refs/tidemark/envs/<env>`; pushes are fast-forward
 * only and the server checks the old value, so each push is a compare-and-swap.
 */
export class StoreRemote {
  private constructor(
    readonly url: string,
    private readonly auth: { username: string; password: string } | undefined,
    private readonly gitdir: string,
  ) {}

  static async attach(remoteUrl: string, gitdir: string): Promise<StoreRemote> {
    const { url, auth } = splitCredentials(remoteUrl);
    if (!/^https?:\/\//.test(url)) {
      throw new TidemarkError(
        "STORE_REMOTE_URL",
        `the store remote must be an http(s) URL, not ${url}`,
        "use a smart-HTTP git URL, credentials as https://user:token@host/store.git",
      );
    }
    const fs = repoFs(gitdir);
    await git.setConfig({ fs, gitdir, path: `remote.${REMOTE}.url`, value: url });
    // isomorphic-git writes tracking refs before the objects they point to
    // arrive (isomorphic-git#2435), so a cut fetch would leave refs that fail
    // `git fsck`. A refspec that matches nothing keeps it from writing any:
    // the store moves its own refs, by compare-and-swap, once objects are in.
    await git.setConfig({
      fs,
      gitdir,
      path: `remote.${REMOTE}.fetch`,
      value: "refs/tidemark/no-tracking-refs:refs/tidemark/no-tracking-refs",
    });
    return new StoreRemote(url, auth, gitdir);
  }

  /** Where the remote's environment ref points, its objects fetched; undefined when the remote has no such environment. */
  async fetch(ref: string): Promise<string | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        const result = await git.fetch({
          fs: repoFs(this.gitdir),
          http,
          gitdir: this.gitdir,
          url: this.url,
          remote: REMOTE,
          ref,
          remoteRef: ref,
          singleBranch: true,
          tags: false,
          onAuth: () => this.auth ?? { cancel: true },
        });
        return result.fetchHead ?? undefined; // none from a remote with no refs at all
      } catch (error) {
        const missing = error instanceof Errors.NotFoundError ? (error.data as { what?: string }).what : undefined;
        if (missing === ref) return undefined;
        // isomorphic-git fails a fetch from a remote whose HEAD points nowhere (isomorphic-git#1654).
        if (missing === "HEAD" && attempt === 0) {
          await this.createDefaultBranch();
          continue;
        }
        if (missing === "HEAD") {
          throw new TidemarkError(
            "STORE_REMOTE_NO_HEAD",
            `the store remote ${this.url} has no default branch`,
            `make ${DEFAULT_BRANCH.slice(11)} its default branch (Tidemark created it with a README)`,
            { cause: error },
          );
        }
        throw this.unreachable("fetch from", error);
      }
    }
  }

  /** Pushes the local ref; false if the remote moved since it was fetched. */
  async push(ref: string): Promise<boolean> {
    try {
      const result = await git.push({
        fs: repoFs(this.gitdir),
        http,
        gitdir: this.gitdir,
        url: this.url,
        remote: REMOTE,
        ref,
        remoteRef: ref,
        onAuth: () => this.auth ?? { cancel: true },
      });
      return result.ok;
    } catch (error) {
      // Not a fast-forward of the advertised head, or the server's compare-and-swap refused it.
      if (error instanceof Errors.PushRejectedError || error instanceof Errors.GitPushError || error instanceof Errors.NotFoundError)
        return false;
      throw this.unreachable("push to", error);
    }
  }

  /** Gives a remote without branches a `main` holding a README. */
  private async createDefaultBranch(): Promise<void> {
    const fs = repoFs(this.gitdir);
    const refs = await git.listServerRefs({ http, url: this.url, prefix: "refs/heads/", onAuth: () => this.auth ?? { cancel: true } });
    if (refs.length > 0) return;
    const blob = await git.writeBlob({ fs, gitdir: this.gitdir, blob: Buffer.from(README) });
    const tree = await git.writeTree({ fs, gitdir: this.gitdir, tree: [{ mode: "100644", path: "README.md", oid: blob, type: "blob" }] });
    const commit = await git.writeCommit({
      fs,
      gitdir: this.gitdir,
      commit: { message: "Tidemark store\n", tree, parent: [], author: IDENTITY, committer: IDENTITY },
    });
    await git.writeRef({ fs, gitdir: this.gitdir, ref: DEFAULT_BRANCH, value: commit, force: true });
    await this.push(DEFAULT_BRANCH);
  }

  private unreachable(action: string, error: unknown): TidemarkError {
    const message =
      error instanceof Errors.UserCanceledError
        ? "it asks for credentials and none were given"
        : error instanceof Error
          ? error.message
          : String(error);
    return new TidemarkError(
      "STORE_REMOTE_UNREACHABLE",
      `could not ${action} the store remote ${this.url}: ${message}`,
      "check the URL, the network and the credentials; deployments are kept in the local store and shared at the next sync",
      { cause: error },
    );
  }
}
