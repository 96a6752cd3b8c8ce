import { isLive, type HostOutcome } from "./outcome.js";

/** A history entry, as much of it as finding a return needs (newest first in a list). */
export interface PastDeployment {
  id: string;
  tree: string;
  sourceCommit: string;
  hosts: HostOutcome[];
  pin?: string;
}

/**
 * The earlier deployment whose tree this one brings back, if any: the newest
 * one with the same tree that went live on some host, when the last attempt
 * had another tree (a retry of the last attempt is not a return).
 */
export function findReturn(history: readonly PastDeployment[], tree: string): { id: string; sourceCommit: string } | undefined {
  if (history.length === 0 || history[0]!.tree === tree) return undefined;
  const earlier = history.find((entry) => entry.tree === tree && entry.hosts.some((host) => isLive(host.outcome)));
  return earlier && { id: earlier.id, sourceCommit: earlier.sourceCommit };
}
