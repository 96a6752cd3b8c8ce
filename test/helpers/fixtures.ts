import { readdirSync, readFileSync } from "node:fs";
import type { MemoryFaults, MemoryFile } from "./memory-tree.js";

/** A case of the corpus; `duplicates` and `order` craft what git's index never writes. */
export interface TreeFixture extends MemoryFaults {
  name: string;
  files: Record<string, MemoryFile>;
  /** A tree git cannot carry over the wire: tested in memory only. */
  memoryOnly?: boolean;
  /** What validation must report; each message is a part of the whole message. */
  problems?: Array<{ file: string; field?: string; message: string }>;
  /** An environment whose plan (and so its deployment) must be refused with the same problems. */
  plan?: string;
}

/** The corpus under test/fixtures/<kind>: one JSON file per case. */
export function treeFixtures(kind: "bad-trees" | "good-trees"): TreeFixture[] {
  const dir = new URL(`../fixtures/${kind}/`, import.meta.url);
  return readdirSync(dir)
    .filter((file) => file.endsWith(".json"))
    .sort()
    .map((file) => ({
      name: file.replace(/\.json$/, ""),
      ...(JSON.parse(readFileSync(new URL(file, dir), "utf8")) as Omit<TreeFixture, "name">),
    }));
}
