import { DEFAULT_DRIFT, type SourceConfig } from "../core/config.js";
import { FIGHTING_HEALS, type HostDrift } from "../core/drift.js";
import { describeError, TidemarkError } from "../core/errors.js";
import { statusReports } from "../core/reports.js";
import { driftStatus } from "../core/statuses.js";
import { deployPlan } from "../pipeline/deploy.js";
import { checkEnvironmentDrift } from "../pipeline/drift.js";
import { healPlan } from "../pipeline/heal.js";
import { prepareEnvironmentPlan } from "../pipeline/plan-environment.js";
import { readSourceConfig, resolveEnvironment } from "../pipeline/read-source.js";
import type { HistoryEntry } from "../store/store.js";
import { environmentUrl } from "./links.js";
import type { Operator } from "./operator.js";

/** How far back heals of one host are counted to tell a host that something else keeps changing. */
const HEAL_WINDOW_MS = 3600_000;

/** What a drift job did; kept by BullMQ as the job's return value (paths and kinds, never a file's content). */
export type DriftJobResult =
  | { environment: string; status: "off" | "not-deployed" }
  | { environment: string; status: "checked"; sourceCommit: string; hosts: HostDrift[]; heal?: { id: string; hosts: string[] } };

/**
 * One scheduled drift check of an environment: every host the store records
 * a release for, against that release, one exec per host; then, with `mode:
 * heal`, the drifted hosts get what they run again, recorded in the store as
 * a `heal` deployment. A host healed FIGHTING_HEALS times within the hour and
 * changed again is left alone and reported `fighting`. The result goes on the
 * deployed commit as `tidemark/<env>/drift`, when it says something new.
 * Runs in the environment's deploy queue: never beside its deployment.
 */
export async function runDriftJob(op: Operator, environment: string, stop: AbortSignal): Promise<DriftJobResult> {
  const releases = [op.mirror.reader.hold(), op.store.reader.hold()];
  try {
    return await driftJob(op, environment, stop);
  } finally {
    for (const release of releases) release();
  }
}

async function driftJob(op: Operator, environment: string, stop: AbortSignal): Promise<DriftJobResult> {
  try {
    await op.store.sync(environment);
  } catch (error) {
    op.log.warn({ environment, error: describeError(error) }, "store remote unreachable: checking drift against the local store");
  }
  const [head] = await op.store.history(environment, 1);
  if (!head) return { environment, status: "not-deployed" };
  const config = await scheduleDrift(op, environment);
  const policy = config?.environments[environment]?.drift ?? DEFAULT_DRIFT;
  if (!config || policy.mode === "off") return { environment, status: "off" };

  const report = await checkEnvironmentDrift(op.store, config, environment, {
    connections: op.deploy.connections!,
    ...(op.deploy.knownHosts ? { knownHosts: op.deploy.knownHosts } : {}),
  });
  const now = Date.now();
  const hosts = await Promise.all(
    report.hosts.map(async (host): Promise<HostDrift> => {
      if (policy.mode !== "heal" || host.state !== "drift") return host;
      const heals = await op.queues.heals(environment, host.host, now, HEAL_WINDOW_MS);
      return heals >= FIGHTING_HEALS ? { ...host, fighting: true } : host;
    }),
  );
  op.metrics.drift(environment, hosts);
  for (const host of hosts.filter((each) => each.state !== "clean"))
    op.log[host.state === "drift" ? "warn" : "info"](
      { environment, host: host.host, state: host.state, findings: host.findings, ...(host.detail ? { detail: host.detail } : {}) },
      `${environment}: ${host.host} ${host.fighting ? "fighting" : host.state}`,
    );

  const toHeal = hosts.filter((host) => host.state === "drift" && !host.fighting);
  const heal = policy.mode === "heal" && toHeal.length > 0 && !stop.aborted ? await healHosts(op, head, toHeal, stop) : undefined;
  const checked = hosts.map((host) => (heal?.hosts.includes(host.host) ? { ...host, healed: heal.id } : host));

  const status = driftStatus(environment, head.sourceCommit, checked, environmentUrl(op.settings, environment));
  if (await op.queues.swapDriftStatus(environment, `${status.sha} ${status.state} ${status.description}`))
    await op.report(statusReports([status]));
  await op.queues.saveDrift(environment, { checkedAt: report.checkedAt.toISOString(), sourceCommit: head.sourceCommit, hosts: checked });
  return { environment, status: "checked", sourceCommit: head.sourceCommit, hosts: checked, ...(heal ? { heal } : {}) };
}

/**
 * Sets the environment's drift schedule from `tidemark.yaml` where the
 * environment points now, as `tidemark drift` reads it, so that a pushed
 * `drift:` holds at once; returns that config. An environment gone from
 * tidemark.yaml is checked no more: nothing says what its hosts should run.
 */
export async function scheduleDrift(op: Pick<Operator, "mirror" | "queues">, environment: string): Promise<SourceConfig | undefined> {
  const source = await resolveEnvironment(op.mirror, environment).catch((error: unknown) => {
    if (error instanceof TidemarkError && error.code === "ENV_UNKNOWN") return undefined;
    throw error;
  });
  const config = source && (await readSourceConfig(op.mirror, source.commit));
  const policy = config?.environments[environment]?.drift ?? DEFAULT_DRIFT;
  await op.queues.syncDriftSchedule(environment, config ? policy : { ...policy, mode: "off" });
  return config;
}

/**
 * Deploys again what the drifted hosts run, from the store (the tree the
 * environment's newest entry records), as a `heal` deployment; each heal
 * counts towards the host's fighting. Returns the hosts it healed.
 */
async function healHosts(
  op: Operator,
  head: HistoryEntry,
  drifted: HostDrift[],
  stop: AbortSignal,
): Promise<{ id: string; hosts: string[] } | undefined> {
  const { environment } = head;
  const recorded = await prepareEnvironmentPlan(
    op.mirror,
    op.store,
    environment,
    { ref: head.sourceRef, commit: head.sourceCommit },
    { recorded: { tree: head.tree }, open: op.open },
  );
  const live = await op.store.liveHosts(environment);
  const { prepared, heal, carry } = await healPlan(recorded, drifted, live, head);
  if (heal.size === 0) return undefined;
  const now = Date.now();
  for (const host of heal.keys()) await op.queues.noteHeal(environment, host, now, HEAL_WINDOW_MS);
  const deployment = await deployPlan(op.mirror, op.store, prepared, {
    ...op.deploy,
    trigger: "heal",
    heal,
    carry,
    stop,
    ...(head.pin ? { pin: head.pin } : {}),
  });
  const healed = deployment.hosts.filter((host) => heal.has(host.host) && host.outcome === "deployed").map((host) => host.host);
  op.log[healed.length === heal.size ? "info" : "warn"](
    { environment, deployment: deployment.id, hosts: deployment.hosts.filter((host) => heal.has(host.host)) },
    `${environment}: healed drift on ${healed.length} of ${heal.size} hosts`,
  );
  return { id: deployment.id, hosts: healed };
}
