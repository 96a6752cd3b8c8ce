import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "../bed/proc.js";

/** What a heap snapshot holds: the live bytes, and those bytes by kind of object. */
export interface LiveHeap {
  bytes: number;
  byKind: Map<string, number>;
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

/**
 * Measures a Node process's live heap without code of its own: started with
 * `nodeOptions`, it writes a heap snapshot on SIGUSR2, and V8 collects all
 * garbage before it writes one. So the sum is what is really held, not what
 * happens to be uncollected at the moment, which swings by a third.
 */
export class LiveHeapProbe {
  readonly dir = mkdtempSync(join(tmpdir(), "tidemark-heap-"));
  readonly nodeOptions = `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${this.dir}`;

  async measure(pid: number): Promise<LiveHeap> {
    process.kill(pid, "SIGUSR2");
    // The file grows as it is written; it is whole once it parses.
    const snapshot = await waitFor(
      "a heap snapshot",
      () => {
        const file = readdirSync(this.dir).find((name) => name.endsWith(".heapsnapshot"));
        if (!file) return undefined;
        const text = readFileSync(join(this.dir, file), "utf8");
        if (!text.trimEnd().endsWith("}")) return undefined;
        try {
          const parsed = JSON.parse(text) as Snapshot;
          rmSync(join(this.dir, file));
          return parsed;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    return summarize(snapshot);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function summarize({ snapshot, nodes, strings }: Snapshot): LiveHeap {
  const fields = snapshot.meta.node_fields;
  const types = snapshot.meta.node_types[0];
  const [typeAt, nameAt, sizeAt] = ["type", "name", "self_size"].map((field) => fields.indexOf(field)) as [number, number, number];
  const byKind = new Map<string, number>();
  let bytes = 0;
  for (let i = 0; i < nodes.length; i += fields.length) {
    const size = nodes[i + sizeAt]!;
    const type = types[nodes[i + typeAt]!]!;
    // Objects and closures by constructor or function name; the rest (code, strings, arrays...) by type.
    const kind = type === "object" || type === "closure" ? `${strings[nodes[i + nameAt]!]} (${type})` : `(${type})`;
    byKind.set(kind, (byKind.get(kind) ?? 0) + size);
    bytes += size;
  }
  return { bytes, byKind };
}

/** The kinds that grew most from one snapshot to another, largest first. */
export function grewMost(before: LiveHeap, after: LiveHeap, count: number): Array<{ kind: string; bytes: number }> {
  return [...after.byKind]
    .map(([kind, bytes]) => ({ kind, bytes: bytes - (before.byKind.get(kind) ?? 0) }))
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, count);
}
