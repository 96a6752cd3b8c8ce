import { readHostTree } from "../config/config-tree.js";
import type { InventoryHost } from "../core/config.js";
import { describeError, TidemarkError } from "../core/errors.js";
import type { TimelineStep, Trigger } from "../core/outcome.js";
import { planHost } from "../core/plan.js";
import type { FileEntry } from "../core/tree.js";
import { redactor, type Redactor } from "../core/redact.js";
import type { DeploymentFacts } from "../core/statuses.js";
import type { SourceMirror } from "../git/mirror.js";
import { readTreePair, type TreeReader } from "../git/tree-reader.js";
import { applyHost, type HostJob, type Replanned, type HostResult, type PhaseObserver } from "../remote/apply-host.js";
import type { HostConnections } from "../remote/connections.js";
import type { KnownHosts } from "../remote/known-hosts.js";
import { openPerLease } from "../remote/ssh-pool.js";
import type { SshOptions, SshTarget } from "../remote/ssh-session.js";
import { runRollout } from "../rollout/rollout.js";
import { newDeploymentId, type Store } from "../store/store.js";
import type { PreparedPlan } from "./plan-environment.js";

export interface DeployOptions {
  ssh: SshOptions;
  /** Where host connections come from: the operator's pool keeps them between deployments; by default each host gets its own, closed after it. */
  connections?: HostConnections;
  knownHosts?: KnownHosts;
  trigger: Trigger;
  /** How long units get to settle before they are checked (default 1 s). */
  settleMs?: number;
  keepReleases?: number;
  observe?: PhaseObserver;
  /** Aborted when the operator shuts down: no new host starts, the ones in flight finish. */
  stop?: AbortSignal;
  /** The deployment's id, when the caller named it before (for the links in statuses); a new one otherwise. */
  id?: string;
  /** Commits asked for and not deployed because this deployment brings a newer one: recorded with it. */
  superseded?: string[];
  /** Pins the environment (tidemark rollback): recorded with the deployment; pushes wait until tidemark unpin. */
  pin?: string;
  /** Hosts of the plan left as they are, each with why: recorded `skipped` (`held-back`), never contacted. */
  hold?: ReadonlyMap<string, string>;
  /** Hosts the plan heals (drift `heal`), each with what drifted: they get what they run again, with no way back (HostJob.heal). */
  heal?: ReadonlyMap<string, string>;
  /** Hosts outside the plan recorded as given instead of `unchanged` (a heal keeps the others as the last attempt left them). */
  carry?: ReadonlyMap<string, HostResult>;
  /**
   * Applied to what the hosts printed (a failing unit's journal, a check's
   * output) before the store, the page and the statuses get it: the
   * configured secrets. Token and key patterns are redacted without it too.
   */
  redact?: Redactor;
}

export interface Deployment {
  id: string;
  environment: string;
  sourceCommit: string;
  sourceRef: string;
  /** Every host of the environment, in name order: unchanged ones too. */
  hosts: HostResult[];
  /** The store commit that records it. */
  storeCommit: string;
  /** The earlier deployment whose tree this one brought back. */
  returnTo?: { id: string; sourceCommit: string };
  /** Set when the store remote could not be reached: the deployment is recorded locally and shared later. */
  shareError?: string;
}

/**
 * A commit that leaves the environment's tree as its last attempt had it
 * (only other environments' files changed) is no deployment: nothing to apply,
 * nothing to record (a pin is the one exception, see deployPlan). A new tree
 * that every host already runs (a revert after a host rolled itself back) is
 * recorded: the environment's last attempt moves to it, with every host unchanged.
 */
export function changesNothing(prepared: PreparedPlan): boolean {
  return prepared.plan.hosts.length === 0 && prepared.envTreeOid === prepared.lastTree;
}

/** What a deployment's statuses are built from: the same in the operator's job and in tidemark deploy and rollback. */
export function deploymentFacts(
  prepared: PreparedPlan,
  id: string,
  reporting: { hostStatuses: boolean; hostStatusLimit: number; targetUrl?: string },
): Omit<DeploymentFacts, "hosts"> {
  const hostCount = new Set([...prepared.desired.hosts.keys(), ...prepared.plan.hosts.map((host) => host.host)]).size;
  return {
    id,
    environment: prepared.plan.environment,
    sourceCommit: prepared.source.commit,
    hostStatuses: reporting.hostStatuses && hostCount <= reporting.hostStatusLimit,
    ...(reporting.targetUrl ? { targetUrl: reporting.targetUrl } : {}),
    ...(prepared.returnTo ? { returnTo: prepared.returnTo } : {}),
  };
}

/**
 * Carries out a prepared plan: the rollout over SSH, host by host, then one
 * store commit with every host's outcome. Hosts with nothing to change are
 * not contacted. A plan that changes nothing is refused unless it pins
 * (tidemark rollback to a tree every host runs): then the pin is what is recorded.
 */
export async function deployPlan(mirror: SourceMirror, store: Store, prepared: PreparedPlan, options: DeployOptions): Promise<Deployment> {
  const { config, plan, desired, deployed, source } = prepared;
  if (changesNothing(prepared) && !options.pin) {
    // Callers check changesNothing first: this keeps an empty deployment out of the history whoever calls.
    throw new TidemarkError(
      "NOTHING_TO_DEPLOY",
      `no host of ${plan.environment} would change: nothing to deploy or record`,
      "every host already runs this config; nothing needs doing",
    );
  }
  // A unit or check that prints a secret of this deployment's files is redacted too, in whatever reaches the store, the page and the statuses.
  const secretsOut = redactor(prepared.secretValues);
  const settingsOut = options.redact ?? PATTERNS_ONLY;
  const redact: Redactor = (text) => settingsOut(secretsOut(text));
  const id = options.id ?? newDeploymentId();
  // What each host runs, as far as this deployment knows: a host planned again from its live tree changes it.
  const running = new Map(deployed);
  const jobs = new Map(plan.hosts.filter((hostPlan) => !options.hold?.has(hostPlan.host)).map((hostPlan) => [hostPlan.host, hostPlan]));
  const blob = (oid: string) => prepared.reader.blob(oid);
  const wholeApp = async (host: string, hostTree: string, app: string) => {
    // The desired tree's objects, or the store's for a host going back to what it ran (rollback-all).
    for (const reader of [prepared.reader, store.reader]) {
      const found = await reader.tree(hostTree).then(
        () => true,
        () => false,
      );
      if (!found) continue;
      const [dir] = await readTreePair({ reader, oid: hostTree, sizes: false }, undefined, `${host}/`);
      return readHostTree(config, host, dir!, []).apps?.get(app)?.files ?? new Map<string, FileEntry>();
    }
    throw new Error(`${host}'s tree ${hostTree.slice(0, 7)} is in neither this deployment's objects nor the store`);
  };
  // `on: once` hooks run on the rollout's first host, alone, before any other starts: it is made a canary if it is not one.
  const first = [...jobs.keys()][0];
  const once = plan.hosts.some((hostPlan) => jobs.has(hostPlan.host) && hostPlan.hooks.some((hook) => hook.once));
  const rollout = once ? { ...config.rollout, canary: Math.max(1, config.rollout.canary) } : config.rollout;
  const job = (host: string, hostPlan = jobs.get(host)!): HostJob => ({
    deploymentId: id,
    target: target(host, config.hosts[host]!, options.knownHosts),
    plan: hostPlan,
    desired: desired.hosts.get(host),
    deployed: options.heal?.has(host) ? undefined : running.get(host),
    ...(options.heal?.has(host) ? { heal: true } : {}),
    blob,
    wholeApp,
    ...(prepared.open ? { open: prepared.open } : {}),
    settleMs: options.settleMs ?? 1000,
    keepReleases: options.keepReleases ?? 3,
    rollBack: config.rollout.onFailure !== "halt",
    confirmSeconds: config.rollout.confirmSeconds,
    previousLabel: prepared.liveSource.get(host)?.slice(0, 7),
    sourceCommit: source.commit,
    ...(prepared.liveSource.has(host) ? { previousCommit: prepared.liveSource.get(host)! } : {}),
    returning: prepared.returnTo !== undefined,
    once: host === first,
    replan: async (live) => {
      const replanned = await replanFromLive(mirror, store, prepared, host, live);
      if (replanned) running.set(host, replanned.deployed);
      return replanned;
    },
  });
  const connections = options.connections ?? openPerLease(options.ssh);

  // The store gets the tree's objects first, so its commit can point at them whatever happens next.
  await store.importTree(prepared.repo, prepared.envTreeOid, prepared.built);
  const startedAt = new Date();
  const started = performance.now();
  const since = () => Math.round(performance.now() - started);
  const timelines = new Map<string, TimelineStep[]>();
  const observe: PhaseObserver = (host, phase) => {
    timelines.set(host, [...(timelines.get(host) ?? []), { phase, at: since() }]);
    options.observe?.(host, phase);
  };
  const timed = async (apply: () => Promise<HostResult>): Promise<HostResult> => {
    const begun = performance.now();
    const result = await apply();
    const host = result.host;
    timelines.set(host, [...(timelines.get(host) ?? []), { phase: "done", at: since() }]);
    return { ...result, durationMs: Math.round(performance.now() - begun), timeline: timelines.get(host) };
  };
  // Undoing a host that was deployed in this rollout: the reverse plan, applied like any other.
  const undo = async (host: string): Promise<HostResult> => {
    const reverse = planHost(host, running.get(host), desired.hosts.get(host));
    if (!reverse) return { host, outcome: "deployed" };
    return timed(() =>
      applyHost(
        {
          ...job(host, reverse),
          desired: running.get(host),
          deployed: desired.hosts.get(host),
          replan: undefined,
          returning: true,
          once: false,
        },
        connections,
        observe,
      ),
    );
  };
  const results = await runRollout(
    [...jobs.keys()],
    rollout,
    (host) => timed(() => applyHost(job(host), connections, observe)),
    undo,
    options.stop,
  );

  const healed = (result: HostResult): HostResult => {
    const found = options.heal?.get(result.host);
    return found ? { ...result, detail: [`healed drift: ${found}`, result.detail].filter(Boolean).join("; ") } : result;
  };
  const byHost = new Map(results.map((result) => [result.host, healed(result)]));
  const held = (host: string): HostResult | undefined =>
    options.hold?.has(host) ? { host, outcome: "skipped", skip: "held-back", detail: options.hold.get(host)! } : undefined;
  const hosts = [...new Set([...desired.hosts.keys(), ...plan.hosts.map((hostPlan) => hostPlan.host)])]
    .sort()
    .map((host): HostResult =>
      redactOutput(byHost.get(host) ?? held(host) ?? options.carry?.get(host) ?? { host, outcome: "unchanged" }, redact),
    );
  const storeCommit = await store.record(
    {
      id,
      environment: plan.environment,
      sourceRepo: mirror.url,
      sourceCommit: source.commit,
      sourceRef: source.ref,
      trigger: options.trigger,
      startedAt,
      hosts: hosts.map(({ durationMs: _, ...host }) => host),
      ...(prepared.returnTo ? { returnTo: prepared.returnTo } : {}),
      ...(options.pin ? { pin: options.pin } : {}),
      ...(options.superseded?.length ? { superseded: options.superseded } : {}),
    },
    prepared.envTreeOid,
  );
  let shareError: string | undefined;
  try {
    await store.sync(plan.environment);
  } catch (error) {
    shareError = describeError(error);
  }
  return {
    id,
    environment: plan.environment,
    sourceCommit: source.commit,
    sourceRef: source.ref,
    hosts,
    storeCommit,
    ...(prepared.returnTo ? { returnTo: prepared.returnTo } : {}),
    ...(shareError ? { shareError } : {}),
  };
}

const PATTERNS_ONLY = redactor([]);

/** A host's output as the store, the page and the statuses may keep it: hosts print what they like, secrets included. */
function redactOutput(result: HostResult, redact: Redactor): HostResult {
  return {
    ...result,
    ...(result.detail !== undefined ? { detail: redact(result.detail) } : {}),
    ...(result.log !== undefined ? { log: redact(result.log) } : {}),
    ...(result.hooks ? { hooks: result.hooks.map((hook) => ({ ...hook, log: redact(hook.log) })) } : {}),
  };
}

/**
 * One host's plan made again from the tree it runs, read with the desired
 * tree as a pair (subtrees they share are left unread): the source mirror has
 * it if any commit of the source repo holds it, the store if a deployment
 * brought it. Undefined when neither has it.
 */
async function replanFromLive(
  mirror: SourceMirror,
  store: Store,
  prepared: PreparedPlan,
  host: string,
  live: string,
): Promise<Replanned | undefined> {
  const reader = await findTree([mirror.reader, store.reader], live);
  if (!reader) return undefined;
  const want = prepared.desired.hosts.get(host);
  const [desiredDir, liveDir] = await readTreePair(
    want && want.oid !== "" ? { reader: prepared.reader, oid: want.oid, sizes: true } : undefined,
    { reader, oid: live, sizes: false },
    `${host}/`,
  );
  const desired = desiredDir ? readHostTree(prepared.config, host, desiredDir, []) : want;
  const deployed = readHostTree(prepared.config, host, liveDir!, []);
  const plan = planHost(host, desired, deployed);
  return plan ? { plan, desired, deployed } : undefined;
}

async function findTree(readers: TreeReader[], oid: string): Promise<TreeReader | undefined> {
  for (const reader of readers) {
    if (
      await reader.entries(oid).then(
        () => true,
        () => false,
      )
    )
      return reader;
  }
  return undefined;
}

/** How a host of the inventory is reached, its key pinned by the inventory or a known_hosts file. */
export function target(name: string, host: InventoryHost, knownHosts: KnownHosts | undefined): SshTarget {
  const keys = host.hostKey ? [host.hostKey] : (knownHosts?.keysFor(host.address, host.port) ?? []);
  return { name, address: host.address, port: host.port, user: host.user, hostKey: keys };
}
