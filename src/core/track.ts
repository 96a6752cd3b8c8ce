import semver from "semver";
import type { TrackingRule } from "./config.js";

export interface SourceRefs {
  /** Branch name → commit. */
  branches: ReadonlyMap<string, string>;
  /** Tag name → the commit it points to (annotated tags peeled). */
  tags: ReadonlyMap<string, string>;
}

export type Resolution = { ref: string; commit: string } | { ref: null; reason: string };

/**
 * Where an environment's tracking rule points now. Branches and tags live in
 * separate namespaces (a branch and a tag may share a name); a tag pattern
 * takes the newest tag by semver, pre-releases only when asked.
 */
export function resolveTrack(rule: TrackingRule, refs: SourceRefs): Resolution {
  if ("branch" in rule) {
    const commit = refs.branches.get(rule.branch);
    return commit
      ? { ref: `refs/heads/${rule.branch}`, commit }
      : { ref: null, reason: `branch ${rule.branch} does not exist in the source repo` };
  }
  if ("tag" in rule) {
    const commit = refs.tags.get(rule.tag);
    return commit
      ? { ref: `refs/tags/${rule.tag}`, commit }
      : { ref: null, reason: `tag ${rule.tag} does not exist in the source repo (a deleted pin leaves the environment where it is)` };
  }
  const newest = newestTag(rule.tags, [...refs.tags.keys()], rule.prerelease);
  return newest
    ? { ref: `refs/tags/${newest}`, commit: refs.tags.get(newest)! }
    : { ref: null, reason: `no tag matches ${rule.tags} with a semver version` };
}

/** Whether a pushed ref (refs/heads/x, refs/tags/y) is one the rule follows: a push to it may move the environment. */
export function tracksRef(rule: TrackingRule, ref: string): boolean {
  if ("branch" in rule) return ref === `refs/heads/${rule.branch}`;
  if ("tag" in rule) return ref === `refs/tags/${rule.tag}`;
  return ref.startsWith("refs/tags/") && globRegExp(rule.tags).test(ref.slice("refs/tags/".length));
}

/**
 * Whether moving from the ref deployed last to a newly resolved one goes
 * forward. Only a tag pattern can go back (its newest tag deleted): then the
 * environment stays where it is; branches and pins go wherever they point.
 */
export function movesForward(rule: TrackingRule, from: string | undefined, to: string): boolean {
  if (!("tags" in rule) || !from?.startsWith("refs/tags/")) return true;
  const version = (ref: string) => semver.parse(ref.slice("refs/tags/".length).replace(/^v/, ""));
  const [before, after] = [version(from), version(to)];
  return !before || !after || semver.gte(after, before);
}

const globRegExp = (pattern: string) =>
  new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replaceAll("*", ".*")
      .replaceAll("?", ".")}$`,
  );

/** The newest tag matching a glob (`*`, `?`) whose name, less a leading 'v', is a semver version. */
export function newestTag(pattern: string, tags: string[], prerelease = false): string | undefined {
  const glob = globRegExp(pattern);
  let best: { tag: string; version: semver.SemVer } | undefined;
  for (const tag of tags) {
    const version = glob.test(tag) ? semver.parse(tag.replace(/^v/, "")) : null;
    if (!version || (version.prerelease.length > 0 && !prerelease)) continue;
    if (!best || semver.gt(version, best.version)) best = { tag, version };
  }
  return best?.tag;
}
