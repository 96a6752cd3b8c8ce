import git from "isomorphic-git";
import { pathFaultProblems } from "../config/config-tree.js";
import { CONFIG_FILE, parseSourceConfig } from "../config/source-config.js";
import type { SourceConfig, TrackingRule } from "../core/config.js";
import { TidemarkError } from "../core/errors.js";
import { MODE_KIND } from "../core/tree.js";
import { InvalidConfigError, type Problem } from "../core/problems.js";
import { resolveTrack, type Resolution } from "../core/track.js";
import { repoFs } from "../git/atomic-fs.js";
import type { SourceMirror } from "../git/mirror.js";
import { remember, walkToTree, type TreeObjects } from "../git/tree-reader.js";

export interface SourceCommit {
  /** The ref it was reached through (refs/heads/main, refs/tags/v1.2.0), or the sha itself. */
  ref: string;
  commit: string;
}

/** The source repo's default branch: its tracking rules say where every environment points. */
export async function defaultBranch(mirror: SourceMirror): Promise<SourceCommit> {
  const refs = await mirror.refs();
  const head = await git
    .resolveRef({ fs: repoFs(mirror.gitdir), gitdir: mirror.gitdir, ref: "refs/remotes/origin/HEAD", depth: 2 })
    .catch(() => undefined);
  const name =
    [...refs.branches].find(([, commit]) => commit === head)?.[0] ??
    (refs.branches.has("main") ? "main" : refs.branches.has("master") ? "master" : undefined);
  if (!name)
    throw new TidemarkError("REPO_EMPTY", `${mirror.url} has no default branch`, "push a branch (main) with tidemark.yaml at its root");
  return { ref: `refs/heads/${name}`, commit: refs.branches.get(name)! };
}

/** A ref as a person types it: a branch, a tag, a full ref, or a commit sha (prefix). */
export async function resolveUserRef(mirror: SourceMirror, ref: string): Promise<SourceCommit> {
  const refs = await mirror.refs();
  const full = ref.startsWith("refs/heads/")
    ? refs.branches.get(ref.slice(11))
    : ref.startsWith("refs/tags/")
      ? refs.tags.get(ref.slice(10))
      : undefined;
  if (full) return { ref, commit: full };
  const branch = refs.branches.get(ref);
  const tag = refs.tags.get(ref);
  if (branch && tag && branch !== tag)
    throw new TidemarkError("REF_AMBIGUOUS", `${ref} is both a branch and a tag`, `say refs/heads/${ref} or refs/tags/${ref}`);
  if (branch) return { ref: `refs/heads/${ref}`, commit: branch };
  if (tag) return { ref: `refs/tags/${ref}`, commit: tag };
  const commit = /^[0-9a-f]{4,40}$/.test(ref) ? await mirror.expandCommit(ref) : undefined;
  if (commit) return { ref: commit, commit };
  throw new TidemarkError(
    "REF_UNKNOWN",
    `${ref} is not a branch, tag or commit of ${mirror.url}`,
    "check the name; tags and branches are fetched on every run",
  );
}

/** An environment's tracking rule, as the default branch states it, and where it points now. */
export async function trackEnvironment(
  mirror: SourceMirror,
  environment: string,
): Promise<{ track: TrackingRule; resolution: Resolution }> {
  const head = await defaultBranch(mirror);
  const config = await readSourceConfig(mirror, head.commit);
  const env = config.environments[environment];
  if (!env) throw unknownEnvironment(environment, config);
  return { track: env.track, resolution: resolveTrack(env.track, await mirror.refs()) };
}

/** Where an environment points now, by its tracking rule as the default branch states it. */
export async function resolveEnvironment(mirror: SourceMirror, environment: string): Promise<SourceCommit> {
  const { resolution } = await trackEnvironment(mirror, environment);
  if (resolution.ref === null)
    throw new TidemarkError(
      "REF_UNRESOLVED",
      `${environment}: ${resolution.reason}`,
      "push the branch or tag the environment tracks, or pass --ref",
    );
  return resolution;
}

/** `tidemark.yaml` at a commit, checked; every problem at once. */
export async function readSourceConfig(mirror: SourceMirror, commit: string): Promise<SourceConfig> {
  const root = await mirror.reader.commitTree(commit);
  const malformed = await configFileProblems(mirror.reader, root);
  if (malformed.length > 0) throw new InvalidConfigError(malformed);
  const file = (await mirror.reader.entries(root)).find((entry) => entry.name === CONFIG_FILE);
  if (!file || MODE_KIND[file.mode] !== "file")
    throw new InvalidConfigError([
      {
        file: CONFIG_FILE,
        message: `missing at ${commit.slice(0, 7)}: the source repo needs ${CONFIG_FILE} at its root${file ? ` (there it is a ${MODE_KIND[file.mode] ?? `mode ${file.mode}`}, not a file)` : ""}`,
      },
    ]);
  // Parsed once per content: most pushes leave tidemark.yaml as it is, and then its blob is not even read.
  const { config, problems } = await remember(
    parsedConfigs,
    file.oid,
    async () => parseSourceConfig(Buffer.from(await mirror.reader.blob(file.oid)).toString("utf8")),
    KEPT_CONFIGS,
  );
  if (!config || problems.length > 0) throw new InvalidConfigError(problems);
  return config;
}

/** tidemark.yaml parsed, by blob oid. */
const parsedConfigs = new Map<string, Promise<ReturnType<typeof parseSourceConfig>>>();
const KEPT_CONFIGS = 16;

/** `tidemark.yaml` on the default branch, where every environment's tracking rule is read. */
export async function readTrackingConfig(mirror: SourceMirror): Promise<SourceConfig> {
  const head = await defaultBranch(mirror);
  try {
    return await readSourceConfig(mirror, head.commit);
  } catch (error) {
    if (error instanceof InvalidConfigError) throw new InvalidTrackingConfigError(head, error);
    throw error;
  }
}

/** The tracking rules cannot be read: `tidemark.yaml` on the default branch is invalid (a retry cannot fix it, the next push will). */
export class InvalidTrackingConfigError extends Error {
  override readonly name = "InvalidTrackingConfigError";

  constructor(head: SourceCommit, cause: InvalidConfigError) {
    super(`tidemark.yaml on ${head.ref} at ${head.commit.slice(0, 7)} is invalid: ${cause.message}`, { cause });
  }
}

/** The root tree's faults that concern tidemark.yaml: a root with two of them could be read either way. */
export async function configFileProblems(objects: TreeObjects, root: string): Promise<Problem[]> {
  return pathFaultProblems((await walkToTree(objects, root, CONFIG_FILE)).faults);
}

export function unknownEnvironment(environment: string, config: SourceConfig): TidemarkError {
  return new TidemarkError(
    "ENV_UNKNOWN",
    `no environment ${environment} in tidemark.yaml`,
    `known environments: ${Object.keys(config.environments).join(", ") || "none"}`,
  );
}
