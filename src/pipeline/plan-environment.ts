import { distinctProblems, pathFaultProblems, readEnvTree, readHostTree } from "../config/config-tree.js";
import type { EnvTree, HostTree, SourceConfig } from "../core/config.js";
import type { GitObject } from "../core/git-objects.js";
import { withOrigins, type FileOrigin } from "../core/layers.js";
import { planEnvironment, type Plan } from "../core/plan.js";
import { InvalidConfigError, type Problem } from "../core/problems.js";
import { hostHooks, plannedHooks } from "../core/hooks.js";
import { findReturn } from "../core/returns.js";
import { MODE_KIND, type Dir, type Entry } from "../core/tree.js";
import type { SourceMirror } from "../git/mirror.js";
import { readTreePair, walkToTree, type ParsedTree, type TreeObjects, type TreeReader } from "../git/tree-reader.js";
import type { Store } from "../store/store.js";
import type { SecretOpener } from "../secrets/secret-files.js";
import { atSource, layerEnvironment, type LayeredEnvironment } from "./layer-environment.js";
import { envApps, openSecrets, planSecrets } from "./plan-secrets.js";
import { readSourceConfig, unknownEnvironment, type SourceCommit } from "./read-source.js";

export interface PreparedPlan {
  config: SourceConfig;
  source: SourceCommit;
  /** Where the desired tree's objects are read from: the source mirror (and a layered tree's objects, built in memory), or the store for a recorded tree. */
  reader: TreeObjects;
  /** The repository the desired tree's other objects are in: what the store imports from, with `built`. */
  repo: TreeReader;
  /** Objects of the effective tree that exist in memory only: rendered templates, merged manifests, layered trees. */
  built: ReadonlyMap<string, GitObject>;
  /** Where each file of a host built from layers or templates came from, by host and `app/path`. */
  origins: ReadonlyMap<string, ReadonlyMap<string, FileOrigin>>;
  /** The environment's effective config tree at the source commit, layers applied and templates rendered (the store commit's tree). */
  envTreeOid: string;
  desired: EnvTree;
  /** What the store says each host runs, read where it differs from `desired`. */
  deployed: Map<string, HostTree>;
  plan: Plan;
  /** The source commit live on each host that changes, per the store: what a failing host rolls back to. */
  liveSource: Map<string, string>;
  /** Set when the tree is one an earlier deployment brought: this deployment returns to it. */
  returnTo?: { id: string; sourceCommit: string };
  /** Set while the environment is pinned by `tidemark rollback`. */
  pin?: string;
  /** The environment's tree at its last attempt (the store's newest entry); undefined before the first. */
  lastTree?: string;
  /**
   * What the secret files this plan deploys hold that a unit or check might
   * print: for the deployment's redaction set, and nothing else. Empty when
   * the plan was made without opening secrets (a preview, the page).
   */
  secretValues: readonly string[];
  /** What opened the plan's secrets, and opens them again for each host at apply time. */
  open?: SecretOpener;
}

export interface PlanOptions {
  /** A tree recorded in the store to plan instead of the source's (tidemark rollback). */
  recorded?: { tree: string };
  /**
   * Opens the secret files of every app the plan deploys, so that one the
   * operator cannot open is a problem before any host is contacted. Without
   * it nothing is decrypted: a preview of a pull request must learn nothing.
   */
  open?: SecretOpener;
}

/** How many deployments back a return to an earlier tree is recognised. */
const RETURN_DEPTH = 200;

/**
 * Reads what an environment should run at a source commit and what the store
 * says runs now, reading only the subtrees that differ, and plans the change.
 */
export async function prepareEnvironmentPlan(
  mirror: SourceMirror,
  store: Store,
  environment: string,
  source: SourceCommit,
  { recorded, open }: PlanOptions = {},
): Promise<PreparedPlan> {
  const config = await readSourceConfig(mirror, source.commit);
  const env = config.environments[environment];
  if (!env) throw unknownEnvironment(environment, config);
  // A recorded tree (tidemark rollback) is read from the store, layered already: the source repo may be unreachable.
  const repo = recorded ? store.reader : mirror.reader;
  const walked = recorded
    ? { oid: recorded.tree, faults: [] }
    : await walkToTree(mirror.reader, await mirror.reader.commitTree(source.commit), env.tree);
  const pathProblems = pathFaultProblems(walked.faults);
  const sourceOid = walked.oid;
  if (!sourceOid)
    throw new InvalidConfigError([
      ...pathProblems,
      {
        file: env.tree,
        message: `the environment's tree directory does not exist at ${source.commit.slice(0, 7)} (environments.${environment}.tree)`,
      },
    ]);

  const liveHosts = await store.liveHosts(environment);
  const live = new Map([...liveHosts].flatMap(([host, { tree }]) => (tree ? [[host, tree] as const] : [])));
  const layered = recorded ? undefined : await layerEnvironment(repo, config, environment, sourceOid, live);
  const envOid = layered?.oid ?? sourceOid;
  const reader = layered?.objects ?? repo;
  const wanted = await reader.tree(envOid);
  // Of two entries with one name, either could be found here: the tree's faults refuse it below.
  const wantedByName = new Map(wanted.entries.map((entry) => [entry.name, entry]));
  const hosts = new Set([...wantedByName.keys(), ...(env.hosts ?? []), ...live.keys()]);
  const entries = new Map<string, Entry>();
  const deployed = new Map<string, HostTree>();
  const { desiredTrees, liveTrees, keep } = treesOfLastPlan(environment, reader, store.reader);
  await Promise.all(
    [...hosts].map(async (host) => {
      const want = wantedByName.get(host);
      const liveOid = config.hosts[host] ? live.get(host) : undefined;
      if (want && MODE_KIND[want.mode] !== "dir") {
        entries.set(host, { kind: "file", oid: want.oid, mode: "100644" });
        return;
      }
      const [desiredDir, liveDir] = await readTreePair(
        want ? { reader: desiredTrees, oid: want.oid, sizes: true } : undefined,
        liveOid ? { reader: liveTrees, oid: liveOid, sizes: false } : undefined,
        `${host}/`,
      );
      if (desiredDir) entries.set(host, desiredDir);
      if (liveDir) deployed.set(host, readHostTree(config, host, liveDir, []));
    }),
  );
  keep();
  const envDir: Dir = { kind: "dir", oid: envOid, entries, ...(wanted.faults.length > 0 ? { faults: wanted.faults } : {}) };
  const { tree: desired, problems } = readEnvTree(config, environment, envDir);
  const allProblems = distinctProblems([
    ...pathProblems,
    ...(layered?.problems ?? []),
    ...problems.map((problem) => (layered ? atSource(layered, env.tree, problem) : problem)),
  ]);
  if (allProblems.length > 0) throw new InvalidConfigError(allProblems);
  const secrets = await planSecrets(planEnvironment(environment, desired, deployed), desired, env.tree, reader, open);
  if (secrets.problems.length > 0)
    throw new InvalidConfigError(
      distinctProblems(secrets.problems.map((problem) => (layered ? atSource(layered, env.tree, problem) : problem))),
    );
  const planned = withOrigins(secrets.plan, layered?.origins ?? new Map());
  const history = await store.history(environment, RETURN_DEPTH);
  const returnTo = findReturn(history, envOid);
  // A return runs the rollback hooks of what each host leaves, before and after its activate hooks.
  const plan = returnTo
    ? {
        ...planned,
        hosts: planned.hosts.map((host) => ({
          ...host,
          hooks: plannedHooks(hostHooks(host, desired.hosts.get(host.host), deployed.get(host.host), true)),
        })),
      }
    : planned;
  // Only the hosts that change can roll back: what they run now is all a failure needs to name.
  const liveSource = new Map<string, string>();
  for (const { host } of plan.hosts) {
    const at = liveHosts.get(host);
    const commit = at && (await store.recordedSource(at.commit));
    if (commit) liveSource.set(host, commit);
  }
  return {
    config,
    source,
    reader,
    repo,
    built: layered?.built ?? new Map(),
    origins: layered?.origins ?? new Map(),
    envTreeOid: envOid,
    desired,
    deployed,
    plan,
    liveSource,
    ...(returnTo ? { returnTo } : {}),
    ...(history[0]?.pin ? { pin: history[0].pin } : {}),
    ...(history[0] ? { lastTree: history[0].tree } : {}),
    secretValues: secrets.values,
    ...(open ? { open } : {}),
  };
}

/** Every environment's whole tree at a commit, checked, its secrets opened when an opener is given: what `tidemark validate` reports. */
export async function validateSource(mirror: SourceMirror, commit: string, open?: SecretOpener): Promise<Problem[]> {
  let config: SourceConfig;
  try {
    config = await readSourceConfig(mirror, commit);
  } catch (error) {
    if (error instanceof InvalidConfigError) return error.problems;
    throw error;
  }
  return validateTrees(mirror.reader, config, await mirror.reader.commitTree(commit), open);
}

/** Every environment's whole tree below a root tree, layers applied and templates rendered, checked, with the trees on the way to it. */
export async function validateTrees(objects: TreeObjects, config: SourceConfig, root: string, open?: SecretOpener): Promise<Problem[]> {
  const problems: Problem[] = [];
  for (const { tree, layered, env, problems: found } of await effectiveEnvironments(objects, config, root)) {
    problems.push(...found);
    if (open && layered && env)
      problems.push(
        ...(await openSecrets(envApps(tree, env), layered.objects, open)).problems.map((problem) => atSource(layered, tree, problem)),
      );
  }
  // Environments that share a tree, or a parent of theirs, meet its problems each.
  return distinctProblems(problems);
}

/** An environment's whole effective tree, read, with what is wrong with it (named at its source); no tree when its directory is missing. */
export interface EffectiveEnvironment {
  name: string;
  /** The environment's tree directory in the source repo. */
  tree: string;
  layered?: LayeredEnvironment;
  env?: EnvTree;
  problems: Problem[];
}

/** Every environment below a root tree with its layers applied and templates rendered, read whole. */
export async function effectiveEnvironments(objects: TreeObjects, config: SourceConfig, root: string): Promise<EffectiveEnvironment[]> {
  const found: EffectiveEnvironment[] = [];
  for (const [name, env] of Object.entries(config.environments)) {
    const { oid, faults } = await walkToTree(objects, root, env.tree);
    const problems = pathFaultProblems(faults);
    if (!oid) {
      found.push({ name, tree: env.tree, problems: [...problems, ...readEnvTree(config, name, undefined).problems] });
      continue;
    }
    const layered = await layerEnvironment(objects, config, name, oid, new Map());
    const [envDir] = await readTreePair({ reader: layered.objects, oid: layered.oid, sizes: true }, undefined);
    const read = readEnvTree(config, name, envDir);
    problems.push(...layered.problems, ...read.problems.map((problem) => atSource(layered, env.tree, problem)));
    found.push({ name, tree: env.tree, layered, env: read.tree, problems });
  }
  return found;
}

/**
 * The trees each environment's last plan read, by oid: the hosts it planned
 * are deployed with the trees it built, which the next plan finds live in
 * the store. A shared file changed on 1,000 hosts twice in a row reads the
 * second time's 2,000 live trees from here, not from disk. Held for one plan
 * per environment, so what is kept follows the fleet's size, not the time
 * the operator has run.
 */
const lastPlanTrees = new Map<string, ReadonlyMap<string, ParsedTree>>();

function treesOfLastPlan(
  environment: string,
  desired: TreeObjects,
  live: TreeObjects,
): { desiredTrees: TreeObjects; liveTrees: TreeObjects; keep: () => void } {
  const known = lastPlanTrees.get(environment) ?? new Map<string, ParsedTree>();
  const read = new Map<string, ParsedTree>();
  const remembering = (objects: TreeObjects): TreeObjects => ({
    tree: async (oid) => {
      const tree = known.get(oid) ?? (await objects.tree(oid));
      read.set(oid, tree);
      return tree;
    },
    blob: (oid) => objects.blob(oid),
  });
  return { desiredTrees: remembering(desired), liveTrees: remembering(live), keep: () => lastPlanTrees.set(environment, read) };
}
