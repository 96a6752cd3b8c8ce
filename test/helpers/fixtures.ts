import { readdirSync, readFileSync } from "node:fs";
import type { MemoryFile } from "./memory-tree.js";

export interface TreeFixture {
  name: string;
  files: Record<string, MemoryFile>;
  /** A tree git cannot carry over the wire: tested in memory only. */
  memoryOnly?: boolean;
  /** What validation must report; each message is a part of the whole message. */
  problems?: Array<{ file: string; field?: string; message: string }>;
}

/** The corpus under test/fixtures/<kind>: one JSON file per case. */
export function treeFixtures(kind: "bad-trees" | "good-trees"): TreeFixture[] {
  const dir = new URL(`../fixtures/${kind}/`, import.meta.url);
  return readdirSync(dir)
    .filter((file) => file.endsWith(".json"))
    .sort()
    .map((file) => ({ name: file.replace(/\.json$/, ""), ...(JSON.parse(readFileSync(new URL(file, dir), "utf8")) as Omit<TreeFixture, "name">) }));
}
