import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import git, { type ReadCommitResult } from "isomorphic-git";
import { TidemarkError } from "../core/errors.js";
import type { GitObject } from "../core/git-objects.js";
import { isLive } from "../core/outcome.js";
import { Semaphore } from "../core/semaphore.js";
import { MODE_KIND, type TreeEntry } from "../core/tree.js";
import { repoFs, sweepTempFiles } from "../git/atomic-fs.js";
import { withLockFile } from "../git/lock.js";
import { consolidatePacks } from "../git/packs.js";
import { detached, loosePath, parseTree, remember, TreeReader } from "../git/tree-reader.js";
import { formatRecord, parseRecord, type DeploymentRecord } from "./record.js";
import { StoreRemote } from "./remote.js";

export interface HistoryEntry extends DeploymentRecord {
  commit: string;
  tree: string;
  at: Date;
  /** The attempt before this one in the environment's history. */
  parent?: string;
}

const IDENTITY = { name: "Tidemark", email: "tidemark@localhost" };
/** Objects read or written at once while importing a tree. */
const IMPORT_PARALLEL = 16;

/** One importTree call: where from, its pack cache, its slots, and every object it has started to copy. */
interface TreeCopy {
  from: TreeReader;
  /** Objects that exist in memory only (a layered tree's), read before `from`. */
  built: ReadonlyMap<string, GitObject>;
  cache: object;
  slots: Semaphore;
  copied: Map<string, Promise<void>>;
}
/** Held while refs move: the environment's first, then its hosts'. */
const REFS_LOCK = "tidemark-refs.lock";

/** A host with a store commit live on it, and its tree there (none once its directory went). */
export interface LiveHost {
  commit: string;
  tree?: string;
}
export const envRef = (environment: string) => `refs/tidemark/envs/${environment}`;
export const hostRef = (environment: string, host: string) => `refs/tidemark/hosts/${environment}/${host}`;

/**
 * The forward-only history: a bare git repository in which every deployment
 * attempt is a commit whose tree is the environment's config tree as deployed.
 * `refs/tidemark/envs/<env>` is the last attempt; `refs/tidemark/hosts/<env>/<host>`
 * is what is live on the host. Objects are written before refs, each file
 * atomically, and refs move by compare-and-swap, so a store cut at any point
 * passes `git fsck` and two writers never lose an update.
 */
export class Store {
  readonly reader: TreeReader;
  /** The source commit each store commit records, by store commit. */
  private readonly sources = new Map<string, Promise<string | undefined>>();
  /** Each environment's live hosts as last read, with the environment's head then: a fleet's refs are read again only once it moved. */
  private readonly liveKept = new Map<string, { head: string; live: ReadonlyMap<string, LiveHost> }>();

  private constructor(
    readonly gitdir: string,
    readonly remote: StoreRemote | undefined,
  ) {
    this.reader = new TreeReader(gitdir);
  }

  /** Opens (or creates) the store; with `remote`, a git URL through which several workers share one history. */
  static async open(gitdir: string, { remote }: { remote?: string } = {}): Promise<Store> {
    if (!existsSync(`${gitdir}/HEAD`)) {
      mkdirSync(gitdir, { recursive: true });
      await git.init({ fs: repoFs(gitdir), gitdir, bare: true });
    }
    sweepTempFiles(gitdir);
    return new Store(gitdir, remote === undefined ? undefined : await StoreRemote.attach(remote, gitdir));
  }

  async resolve(ref: string): Promise<string | undefined> {
    // The store writes loose refs only: one small read, with git's own lookup for a store someone packed.
    const loose = looseRef(await readFile(`${this.gitdir}/${ref}`, "utf8").catch(() => undefined));
    if (loose) return loose;
    try {
      return await git.resolveRef({ fs: repoFs(this.gitdir), gitdir: this.gitdir, ref });
    } catch {
      return undefined;
    }
  }

  /** Every host of the environment with a store commit live on it. */
  async liveHosts(environment: string): Promise<ReadonlyMap<string, LiveHost>> {
    const head = await this.resolve(envRef(environment));
    const kept = this.liveKept.get(environment);
    if (head !== undefined && kept?.head === head) return kept.live;
    const writing = this.refsLocked();
    const live = new Map<string, LiveHost>();
    const place = this.placer(live);
    for (const host of await this.hostRefNames(environment)) {
      const commit = this.looseHostRef(environment, host) ?? (await this.resolve(hostRef(environment, host)));
      if (commit) await place(host, commit);
    }
    // Kept only if no writer was at work while the refs were read: host refs move only after the environment's ref, under the refs lock.
    if (head !== undefined && !writing && !this.refsLocked() && (await this.resolve(envRef(environment))) === head)
      this.liveKept.set(environment, { head, live });
    return live;
  }

  /** Sets hosts live at store commits; most hosts point at the same few, each one's hosts looked up by name, read once. */
  private placer(live: Map<string, LiveHost>): (host: string, commit: string) => Promise<void> {
    const hostsAt = new Map<string, Promise<Map<string, TreeEntry>>>();
    return async (host, commit) => {
      let hosts = hostsAt.get(commit);
      if (!hosts) hostsAt.set(commit, (hosts = this.hostEntries(commit)));
      const entry = (await hosts).get(host);
      live.set(host, entry && MODE_KIND[entry.mode] === "dir" ? { commit, tree: entry.oid } : { commit });
    };
  }

  /** After this process moved the refs, the kept snapshot moved the same way: the operator's next plan reads no ref of a fleet again. */
  private async keepMoved(environment: string, expected: string | undefined, head: string, hosts: Map<string, string>): Promise<void> {
    const kept = this.liveKept.get(environment);
    this.liveKept.delete(environment);
    if (!kept || kept.head !== expected) return;
    const live = new Map(kept.live);
    const place = this.placer(live);
    for (const [host, commit] of hosts) await place(host, commit);
    this.liveKept.set(environment, { head, live });
  }

  private refsLocked(): boolean {
    return existsSync(`${this.gitdir}/${REFS_LOCK}`);
  }

  /** A host's ref as the store writes it, read at once: a fleet's thousand tiny files take a tenth of the time read one by one in parallel. */
  private looseHostRef(environment: string, host: string): string | undefined {
    try {
      return looseRef(readFileSync(`${this.gitdir}/${hostRef(environment, host)}`, "utf8"));
    } catch {
      return undefined;
    }
  }

  /** The entries of a store commit's tree by name, the first of a name as git's lookup finds it. */
  private async hostEntries(commit: string): Promise<Map<string, TreeEntry>> {
    const entries = new Map<string, TreeEntry>();
    for (const entry of await this.reader.entries(await this.reader.commitTree(commit)))
      if (!entries.has(entry.name)) entries.set(entry.name, entry);
    return entries;
  }

  /** The names under refs/tidemark/hosts/<env>: a directory listing, unless someone packed the store's refs. */
  private async hostRefNames(environment: string): Promise<string[]> {
    const filepath = `refs/tidemark/hosts/${environment}`;
    if (existsSync(`${this.gitdir}/packed-refs`))
      return git.listRefs({ fs: repoFs(this.gitdir), gitdir: this.gitdir, filepath }).catch(() => [] as string[]);
    try {
      // isomorphic-git's listing stats each of a fleet's refs in turn; the store writes them flat, one file per host.
      return readdirSync(`${this.gitdir}/${filepath}`, { withFileTypes: true })
        .filter((entry) => entry.isFile())
        .map((entry) => entry.name)
        .sort();
    } catch {
      return [];
    }
  }

  /** The source commit a store commit records; store commits never change, so each is read once. */
  recordedSource(commit: string): Promise<string | undefined> {
    // Most hosts point at the same few store commits, each a record of every host.
    return remember(
      this.sources,
      commit,
      async () => {
        const source = (await this.entry(commit))?.sourceCommit;
        return source === undefined ? undefined : detached(source);
      },
      256,
    );
  }

  /**
   * Copies a tree and everything below it from another repository; subtrees
   * the store has are skipped. Children are written before their tree: a tree
   * in the store always has everything below it.
   */
  async importTree(from: TreeReader, oid: string, built: ReadonlyMap<string, GitObject> = new Map()): Promise<void> {
    // The source's pack cache (without one, isomorphic-git reads and checksums the source's whole pack for every object), a few objects in flight, each object copied once.
    await this.copyTree({ from, built, cache: from.cache, slots: new Semaphore(IMPORT_PARALLEL), copied: new Map() }, oid);
  }

  /** Records a deployment attempt on top of the environment's history; retried if another writer got there first. */
  async record(record: DeploymentRecord, tree: string): Promise<string> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const parent = await this.resolve(envRef(record.environment));
      const timestamp = Math.floor(Date.now() / 1000);
      const author = { ...IDENTITY, timestamp, timezoneOffset: 0 };
      const commit = await git.writeCommit({
        fs: repoFs(this.gitdir),
        gitdir: this.gitdir,
        commit: { message: formatRecord(record), tree, parent: parent ? [parent] : [], author, committer: author },
      });
      const hosts = record.hosts.filter((host) => isLive(host.outcome)).map((host) => host.host);
      if (await this.moveRefs(record.environment, parent, commit, new Map(hosts.map((host) => [host, commit])))) return commit;
    }
    throw new TidemarkError(
      "STORE_CONTENDED",
      `could not record deployment ${record.id}: the store kept moving`,
      "too many writers at once; try again",
    );
  }

  /** The environment's deployments, newest first. */
  async history(environment: string, limit = 100): Promise<HistoryEntry[]> {
    const head = await this.resolve(envRef(environment));
    if (!head) return [];
    const commits = await git.log({ fs: repoFs(this.gitdir), gitdir: this.gitdir, ref: head, depth: limit, cache: this.reader.cache });
    return commits.flatMap(({ oid, commit }) => {
      const record = parseRecord(commit.message);
      return record
        ? [
            {
              ...record,
              commit: oid,
              tree: commit.tree,
              at: new Date(commit.committer.timestamp * 1000),
              ...(commit.parent[0] ? { parent: commit.parent[0] } : {}),
            },
          ]
        : [];
    });
  }

  /** The deployment a commit records. */
  async entry(commit: string): Promise<HistoryEntry | undefined> {
    const { commit: data } = await git.readCommit({ fs: repoFs(this.gitdir), gitdir: this.gitdir, oid: commit, cache: this.reader.cache });
    const record = parseRecord(data.message);
    return (
      record && {
        ...record,
        commit,
        tree: data.tree,
        at: new Date(data.committer.timestamp * 1000),
        ...(data.parent[0] ? { parent: data.parent[0] } : {}),
      }
    );
  }

  /**
   * Shares the environment's history through the store remote: the remote's
   * new attempts come in (host refs follow them), and local attempts it has
   * not seen go out, replayed on top of its head if another worker pushed
   * first. The remote's history is never rewritten: it only moves forward.
   */
  async sync(environment: string): Promise<void> {
    if (!this.remote) return;
    const ref = envRef(environment);
    for (let attempt = 0; attempt < 20; attempt++) {
      const remoteHead = await this.remote.fetch(ref);
      await consolidatePacks(this.gitdir);
      await this.reader.notePacks();
      const localHead = await this.resolve(ref);
      if (localHead === remoteHead) return;
      if (localHead === undefined) {
        if (await this.moveRefs(environment, undefined, remoteHead!, await this.liveSince(remoteHead!, undefined))) return;
        continue;
      }
      const base =
        remoteHead &&
        ((
          await git.findMergeBase({ fs: repoFs(this.gitdir), gitdir: this.gitdir, oids: [localHead, remoteHead], cache: this.reader.cache })
        )[0] as string | undefined);
      if (remoteHead && base === localHead) {
        if (await this.moveRefs(environment, localHead, remoteHead, await this.liveSince(remoteHead, localHead))) return;
        continue;
      }
      if (remoteHead && base !== remoteHead) {
        const head = await this.replay(localHead, base, remoteHead);
        if (!(await this.moveRefs(environment, localHead, head, await this.liveSince(head, base)))) continue;
      }
      if (await this.remote.push(ref)) return;
    }
    throw new TidemarkError(
      "STORE_CONTENDED",
      `could not share the history of ${environment}: the store remote kept moving`,
      "too many writers at once; try again",
    );
  }

  /** Moves the environment ref from `expected` to `commit`, and the given host refs, or nothing if it moved meanwhile. */
  private async moveRefs(environment: string, expected: string | undefined, commit: string, hosts: Map<string, string>): Promise<boolean> {
    return withLockFile(`${this.gitdir}/${REFS_LOCK}`, async () => {
      if ((await this.resolve(envRef(environment))) !== expected) return false;
      // The environment's ref first: while it has not moved, no host ref has (liveHosts keeps its snapshot by it).
      const refs: Array<[string, string]> = [
        [envRef(environment), commit],
        ...[...hosts].map(([host, at]): [string, string] => [hostRef(environment, host), at]),
      ];
      for (const [ref, at] of refs) {
        mkdirSync(`${this.gitdir}/${ref.slice(0, ref.lastIndexOf("/"))}`, { recursive: true });
        await repoFs(this.gitdir).promises.writeFile(`${this.gitdir}/${ref}`, `${at}\n`);
      }
      await this.keepMoved(environment, expected, commit, hosts);
      return true;
    });
  }

  /** For each host that went live in the commits after `base` up to `head`, the newest such commit. */
  private async liveSince(head: string, base: string | undefined): Promise<Map<string, string>> {
    const live = new Map<string, string>();
    for (const { oid, commit } of await this.chain(head, base)) {
      for (const host of parseRecord(commit.message)?.hosts ?? []) {
        if (isLive(host.outcome) && !live.has(host.host)) live.set(host.host, oid);
      }
    }
    return live;
  }

  /** Writes the attempts after `base` up to `head` again on top of `onto`, oldest first; returns the new head. */
  private async replay(head: string, base: string | undefined, onto: string): Promise<string> {
    let parent = onto;
    for (const { commit } of (await this.chain(head, base)).reverse()) {
      parent = await git.writeCommit({ fs: repoFs(this.gitdir), gitdir: this.gitdir, commit: { ...commit, parent: [parent] } });
    }
    return parent;
  }

  /** The commits from `head` back to `base` (exclusive), newest first. */
  private async chain(head: string, base: string | undefined): Promise<ReadCommitResult[]> {
    const commits: ReadCommitResult[] = [];
    for (let oid: string | undefined = head; oid !== undefined && oid !== base;) {
      const read = await git.readCommit({ fs: repoFs(this.gitdir), gitdir: this.gitdir, oid, cache: this.reader.cache });
      commits.push(read);
      oid = read.commit.parent[0];
    }
    return commits;
  }

  private copyTree(copy: TreeCopy, oid: string): Promise<void> {
    return this.once(copy, oid, async () => {
      const { object, type } = await copy.slots.run(() => readFrom(copy, oid));
      if (type !== "tree") throw new Error(`${oid} is a ${type}, not a tree`);
      const children = parseTree(Buffer.from(object)).flatMap((entry) => {
        const kind = MODE_KIND[entry.mode];
        return kind === "dir" ? [this.copyTree(copy, entry.oid)] : kind === "submodule" ? [] : [this.copyBlob(copy, entry.oid)];
      });
      // Every child settles before the tree is written or the copy fails: nothing is left writing behind an error.
      const failed = (await Promise.allSettled(children)).find((result) => result.status === "rejected");
      if (failed) throw failed.reason;
      await copy.slots.run(() =>
        git.writeObject({ fs: repoFs(this.gitdir), gitdir: this.gitdir, type: "tree", object, format: "content" }),
      );
    });
  }

  private copyBlob(copy: TreeCopy, oid: string): Promise<void> {
    return this.once(copy, oid, () =>
      copy.slots.run(async () => {
        const { object } = await readFrom(copy, oid);
        await git.writeObject({ fs: repoFs(this.gitdir), gitdir: this.gitdir, type: "blob", object, format: "content" });
      }),
    );
  }

  /** Copies an object unless the store has it; an object found at several paths (the same file on many hosts) is copied once. */
  private once(copy: TreeCopy, oid: string, write: () => Promise<void>): Promise<void> {
    let copied = copy.copied.get(oid);
    if (!copied) {
      copied = this.has(oid) ? Promise.resolve() : write();
      copy.copied.set(oid, copied);
    }
    return copied;
  }

  private has(oid: string): boolean {
    return existsSync(loosePath(this.gitdir, oid));
  }
}

/** The commit a loose ref file names, if it is one. */
function looseRef(text: string | undefined): string | undefined {
  return text !== undefined && /^[0-9a-f]{40}\n?$/.test(text) ? text.trim() : undefined;
}

/** An object to copy: from memory when the tree was built there, else from the source repository. */
async function readFrom(copy: TreeCopy, oid: string): Promise<{ object: Uint8Array; type: string }> {
  const built = copy.built.get(oid);
  if (built) return { object: built.body, type: built.type };
  const { object, type } = await git.readObject({
    fs: repoFs(copy.from.gitdir),
    gitdir: copy.from.gitdir,
    oid,
    format: "content",
    cache: copy.cache,
  });
  return { object: object as Uint8Array, type };
}

/** A deployment id: sortable by time, unique across workers. */
export function newDeploymentId(now = new Date()): string {
  return `${now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z")}-${randomBytes(3).toString("hex")}`;
}
