import git from "isomorphic-git";
import { repoFs } from "../git/atomic-fs.js";
import { envRef, type HistoryEntry, type Store } from "../store/store.js";

interface EnvironmentHistory {
  head: string;
  /** Newest first. */
  entries: HistoryEntry[];
}

/**
 * Every deployment in the store, by environment and by id, for the page.
 * Store commits never change, so each is read once: a refresh walks only the
 * commits added since the last one (the whole chain again only if a store
 * remote replayed local attempts onto another head).
 */
export class HistoryIndex {
  private readonly environments = new Map<string, EnvironmentHistory>();
  private readonly byId = new Map<string, HistoryEntry>();
  private refreshing: Promise<void> | undefined;

  constructor(private readonly store: Store) {}

  /** Brings the index up to date with the store; concurrent callers share one walk. */
  refresh(): Promise<void> {
    this.refreshing ??= this.walk().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  environmentNames(): string[] {
    return [...this.environments.keys()].sort();
  }

  history(environment: string): HistoryEntry[] {
    return this.environments.get(environment)?.entries ?? [];
  }

  deployment(id: string): HistoryEntry | undefined {
    return this.byId.get(id);
  }

  /** The newest deployments of every environment, newest first. */
  recent(limit: number): HistoryEntry[] {
    return [...this.environments.values()]
      .flatMap((env) => env.entries.slice(0, limit))
      .sort((a, b) => b.at.getTime() - a.at.getTime() || b.id.localeCompare(a.id))
      .slice(0, limit);
  }

  private async walk(): Promise<void> {
    const { gitdir } = this.store;
    const names = await git.listRefs({ fs: repoFs(gitdir), gitdir, filepath: "refs/tidemark/envs" }).catch(() => [] as string[]);
    for (const environment of names) {
      const head = await this.store.resolve(envRef(environment));
      const known = this.environments.get(environment);
      if (!head || known?.head === head) continue;
      const seen = new Set(known?.entries.map((entry) => entry.commit));
      const fresh: HistoryEntry[] = [];
      let oid: string | undefined = head;
      while (oid !== undefined && !seen.has(oid)) {
        const entry = await this.store.entry(oid);
        if (entry) fresh.push(entry);
        oid = entry?.parent;
      }
      const older =
        oid === undefined ? [] : (known?.entries ?? []).slice((known?.entries ?? []).findIndex((entry) => entry.commit === oid));
      const entries = [...fresh, ...older];
      for (const entry of known?.entries ?? []) this.byId.delete(entry.id);
      for (const entry of entries) this.byId.set(entry.id, entry);
      this.environments.set(environment, { head, entries });
    }
  }
}
