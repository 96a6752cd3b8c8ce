import { userObject, ownerId, webhookRepository, type Urls } from "./github-objects.js";
import { git, type ForgeRepo } from "./repos.js";
import { run } from "../proc.js";

const ZERO = "0000000000000000000000000000000000000000";

export interface RefUpdate {
  before: string;
  after: string;
  ref: string;
}

export function parseUpdates(lines: string[]): RefUpdate[] {
  return lines.map((line) => {
    const [before, after, ref] = line.trim().split(" ");
    if (!before || !after || !ref) throw new Error(`malformed post-receive line: ${JSON.stringify(line)}`);
    return { before, after, ref };
  });
}

/** Builds the `push` payload GitHub would send for one ref update, read from the repository itself. */
export async function buildPushPayload(urls: Urls, repo: ForgeRepo, update: RefUpdate, pusher: string) {
  const created = update.before === ZERO;
  const deleted = update.after === ZERO;
  const isTag = update.ref.startsWith("refs/tags/");
  const html = `${urls.web}/${repo.fullName}`;
  const head = deleted ? undefined : await peel(repo, update.after);
  const commits = deleted || isTag || head === undefined ? [] : await pushedCommits(repo, update, head);
  const headCommit = head === undefined ? null : await commitObject(urls, repo, head);
  const shortName = update.ref.replace(/^refs\/(heads|tags)\//, "");
  return {
    ref: update.ref,
    before: update.before,
    after: update.after,
    created,
    deleted,
    forced: !created && !deleted && (isTag || !(await isAncestor(repo, update.before, update.after))),
    base_ref: isTag && head !== undefined ? await branchAt(repo, head) : null,
    compare: created ? `${html}/compare/${shortName}` : `${html}/compare/${update.before.slice(0, 12)}...${update.after.slice(0, 12)}`,
    commits: await Promise.all(commits.map((sha) => commitObject(urls, repo, sha))),
    head_commit: headCommit,
    repository: webhookRepository(urls, repo, Math.floor(Date.now() / 1000)),
    pusher: { name: pusher || repo.owner, email: `${pusher || repo.owner}@users.noreply.forge.invalid` },
    sender: userObject(urls, pusher || repo.owner, ownerId(pusher || repo.owner)),
  };
}

async function peel(repo: ForgeRepo, sha: string): Promise<string | undefined> {
  const { stdout, code } = await run("git", ["--git-dir", repo.gitDir, "rev-parse", "--verify", "--quiet", `${sha}^{commit}`], {
    allowFailure: true,
  });
  return code === 0 ? stdout.trim() : undefined;
}

async function isAncestor(repo: ForgeRepo, ancestor: string, descendant: string): Promise<boolean> {
  const { code } = await run("git", ["--git-dir", repo.gitDir, "merge-base", "--is-ancestor", ancestor, descendant], {
    allowFailure: true,
  });
  return code === 0;
}

/** The commits this push brought to the branch, oldest first, at most 20 (as GitHub). */
async function pushedCommits(repo: ForgeRepo, update: RefUpdate, head: string): Promise<string[]> {
  const exclude =
    update.before === ZERO
      ? (await git(repo, "for-each-ref", "--format=%(objectname)", "refs/heads/")).split("\n").filter((sha) => sha !== "" && sha !== head)
      : [update.before];
  const list = await git(repo, "rev-list", "--reverse", head, ...exclude.map((sha) => `^${sha}`));
  return list.split("\n").filter(Boolean).slice(-20);
}

async function branchAt(repo: ForgeRepo, sha: string): Promise<string | null> {
  const refs = await git(repo, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/");
  const match = refs.split("\n").find((line) => line.startsWith(`${sha} `));
  return match ? match.slice(sha.length + 1) : null;
}

async function commitObject(urls: Urls, repo: ForgeRepo, sha: string) {
  const format = ["%H", "%T", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%B"].join("%x00");
  const [
    id = sha,
    tree = "",
    authorName = "",
    authorEmail = "",
    authorDate = "",
    committerName = "",
    committerEmail = "",
    committerDate = "",
    message = "",
  ] = (await git(repo, "show", "-s", `--format=${format}`, sha)).split("\0");
  const changes = await git(repo, "diff-tree", "--no-commit-id", "--name-status", "-r", "--root", "--no-renames", sha);
  const files = { A: [] as string[], D: [] as string[], M: [] as string[] };
  for (const line of changes.split("\n").filter(Boolean)) {
    const [status = "M", ...path] = line.split("\t");
    (files[status[0] as "A" | "D" | "M"] ?? files.M).push(path.join("\t"));
  }
  return {
    id,
    tree_id: tree,
    distinct: true,
    message: message.replace(/\n+$/, ""),
    timestamp: authorDate,
    url: `${urls.web}/${repo.fullName}/commit/${id}`,
    author: { name: authorName, email: authorEmail, date: authorDate },
    committer: { name: committerName, email: committerEmail, date: committerDate },
    added: files.A,
    removed: files.D,
    modified: files.M,
  };
}
