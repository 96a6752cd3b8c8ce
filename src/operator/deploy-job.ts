import { UnrecoverableError } from "bullmq";
import { describeError, TidemarkError } from "../core/errors.js";
import { deploymentOutcome, isLive, type DeploymentOutcome, type HostOutcome } from "../core/outcome.js";
import { InvalidConfigError } from "../core/problems.js";
import { finalReports, startReports, statusReports } from "../core/reports.js";
import { convergedStatuses, invalidConfigStatus, noChangeStatus, pinnedStatus, supersededStatus } from "../core/statuses.js";
import { movesForward } from "../core/track.js";
import { changesNothing, deployPlan, deploymentFacts } from "../pipeline/deploy.js";
import { prepareEnvironmentPlan } from "../pipeline/plan-environment.js";
import { trackEnvironment } from "../pipeline/read-source.js";
import type { DeployJob, RunningDeployment } from "../queue/queues.js";
import type { PhaseObserver } from "../remote/apply-host.js";
import { heldBack, STOPPED } from "../rollout/rollout.js";
import { newDeploymentId } from "../store/store.js";
import { deploymentUrl, environmentUrl } from "./links.js";
import type { Operator } from "./operator.js";

/** What a deploy job did; kept by BullMQ as the job's return value (no logs, no secrets). */
export type DeployJobResult = (
  | { status: "deployed"; id: string; outcome: DeploymentOutcome; sourceRef: string; sourceCommit: string; hosts: Array<HostOutcome & { durationMs?: number; uploadedBytes?: number }>; returnTo?: { id: string; sourceCommit: string } }
  | { status: "up-to-date"; sourceRef: string; sourceCommit: string }
  | { status: "no-change"; sourceRef: string; sourceCommit: string }
  | { status: "stays"; reason: string }
) & { environment: string; superseded: string[] };

/** Thrown after a shutdown cut a rollout short: the attempt is recorded, and the job runs again to deploy the rest. */
export class StoppedError extends Error {}

/**
 * One deployment job: resolves where the environment points now (the
 * request was a hint), plans against the store, rolls out, records, and
 * queues the statuses of each step for GitHub. The commits asked for before
 * it resolved and not deployed are reported superseded; a pinned environment
 * holds the commit back; a commit that changes no host is recorded nowhere
 * and told so. Errors that a retry cannot fix end the job at once.
 */
export async function runDeployJob(op: Operator, job: DeployJob, stop: AbortSignal, observe?: PhaseObserver): Promise<DeployJobResult> {
  // The repos' packs stay in memory while jobs run, not for the life of the process.
  const releases = [op.mirror.reader.hold(), op.store.reader.hold()];
  try {
    return await deployJob(op, job, stop, observe);
  } finally {
    for (const release of releases) release();
  }
}

async function deployJob(op: Operator, job: DeployJob, stop: AbortSignal, observe?: PhaseObserver): Promise<DeployJobResult> {
  const { environment } = job;
  const seen = await op.queues.sequence();
  let commit: string | undefined;
  try {
    await op.mirror.fetch();
    const { track, resolution } = await trackEnvironment(op.mirror, environment);
    if (resolution.ref === null) return { environment, status: "stays", reason: `${resolution.reason}; ${environment} stays where it is`, superseded: [] };
    commit = resolution.commit;
    try {
      await op.store.sync(environment);
    } catch (error) {
      // The hosts' lock and stale-plan check keep a deployment planned on an out-of-date store safe.
      op.log.warn({ environment, error: describeError(error) }, "store remote unreachable: planning with the local store");
    }
    const last = (await op.store.history(environment, 1))[0];
    if (last?.pin) {
      // Pinned by tidemark rollback: the push is kept in mind (polls ask again) and deployed after tidemark unpin.
      if (await op.queues.markWaiting(environment, resolution.commit)) await op.report(statusReports([pinnedStatus(environment, resolution.commit, last.pin, environmentUrl(op.settings, environment))]));
      return { environment, status: "stays", reason: `${environment} is pinned (${last.pin}); ${resolution.commit.slice(0, 7)} waits for tidemark unpin ${environment}`, superseded: [] };
    }
    await op.queues.clearWaiting(environment);
    if (last && !movesForward(track, last.sourceRef, resolution.ref)) {
      return { environment, status: "stays", reason: `${resolution.ref} is older than ${last.sourceRef}, deployed last; ${environment} stays where it is`, superseded: [] };
    }
    const prepared = await prepareEnvironmentPlan(op.mirror, op.store, environment, resolution);
    const again = last?.sourceCommit === resolution.commit ? last : undefined;
    const hold = again ? heldBack(again.hosts, again.sourceCommit) : new Map<string, string>();
    const pending = prepared.plan.hosts.filter((host) => !hold.has(host.host));
    if (again && pending.length === 0) {
      const superseded = await op.queues.takeRequested(environment, seen, resolution.commit);
      const facts = { id: again.id, environment, sourceCommit: resolution.commit, hostStatuses: op.settings.hostStatuses && prepared.desired.hosts.size <= op.settings.hostStatusLimit, targetUrl: deploymentUrl(op.settings, again.id) };
      const finished = again.hosts.filter((host) => !isLive(host.outcome) && !hold.has(host.host) && prepared.desired.hosts.has(host.host)).map((host) => host.host);
      const converged = hold.size === 0 && finished.length > 0 && (await op.queues.firstConverged(environment, resolution.commit)) ? convergedStatuses(facts, [...prepared.desired.hosts.keys()], finished) : [];
      await op.report(statusReports([...converged, ...superseded.map((sha) => supersededStatus(environment, sha, resolution.commit, facts.targetUrl))]));
      await op.queues.markBehind(environment, false);
      return { environment, status: "up-to-date", sourceRef: resolution.ref, sourceCommit: resolution.commit, superseded };
    }
    if (!again && changesNothing(prepared)) {
      // Only other environments' files changed: every host runs this config already. No deployment, no history entry; one word on the commit.
      const superseded = await op.queues.takeRequested(environment, seen, resolution.commit);
      const link = environmentUrl(op.settings, environment);
      await op.report(statusReports([noChangeStatus(environment, resolution.commit, link), ...superseded.map((sha) => supersededStatus(environment, sha, resolution.commit, link))]));
      await op.queues.markBehind(environment, false);
      return { environment, status: "no-change", sourceRef: resolution.ref, sourceCommit: resolution.commit, superseded };
    }
    if (stop.aborted) throw new StoppedError("the operator is shutting down; another worker deploys it");

    const id = newDeploymentId();
    const superseded = await op.queues.takeRequested(environment, seen, resolution.commit);
    const facts = deploymentFacts(prepared, id, { ...op.settings, targetUrl: deploymentUrl(op.settings, id) });
    await op.report(startReports(facts, pending.map((host) => host.host), superseded));

    const deployment = await showRunning(op, { id, environment, sourceCommit: resolution.commit, sourceRef: resolution.ref, hosts: pending.map((host) => host.host) }, observe, (running) =>
      deployPlan(op.mirror, op.store, prepared, { ...op.deploy, id, superseded, trigger: job.trigger, stop, observe: running, hold }),
    );
    if (deployment.shareError) op.log.warn({ environment, deployment: deployment.id, error: deployment.shareError }, "deployment recorded locally; the store remote gets it at the next sync");
    const stopped = deployment.hosts.some((host) => host.outcome === "skipped" && host.detail?.endsWith(STOPPED));
    // One batch: every host's final status, then the environment's, then the GitHub deployment's.
    if (!stopped) await op.report(finalReports({ ...facts, hosts: deployment.hosts }));
    // Hosts a passing failure left behind (not the ones where the commit itself failed) are tried again at the next polls.
    await op.queues.markBehind(environment, deployment.hosts.some((host) => host.outcome === "unreachable" || host.outcome === "failed"));
    if (stopped) throw new StoppedError(`the operator stopped during deployment ${deployment.id}; the hosts not started are deployed when the job runs again`);
    return {
      environment,
      status: "deployed",
      id: deployment.id,
      outcome: deploymentOutcome(deployment.hosts),
      sourceRef: deployment.sourceRef,
      sourceCommit: deployment.sourceCommit,
      hosts: deployment.hosts.map(({ host, outcome, detail, durationMs, uploadedBytes }) => ({ host, outcome, ...(detail ? { detail } : {}), ...(durationMs !== undefined ? { durationMs } : {}), ...(uploadedBytes !== undefined ? { uploadedBytes } : {}) })),
      ...(deployment.returnTo ? { returnTo: deployment.returnTo } : {}),
      superseded,
    };
  } catch (error) {
    if (error instanceof InvalidConfigError && commit) await op.report(statusReports([invalidConfigStatus(environment, commit, error.problems, environmentUrl(op.settings, environment))]));
    // A broken config tree or an unknown environment stays broken until someone pushes: no retry.
    if (error instanceof InvalidConfigError || (error instanceof TidemarkError && ["ENV_UNKNOWN", "REPO_URL"].includes(error.code))) {
      throw new UnrecoverableError(describeError(error));
    }
    throw error;
  }
}

/** Shows the deployment as under way on the operator's page while it runs; a Redis hiccup costs the live view, never the deployment. */
async function showRunning<T>(op: Operator, deployment: Omit<RunningDeployment, "steps" | "startedAt">, observe: PhaseObserver | undefined, run: (observe: PhaseObserver) => Promise<T>): Promise<T> {
  const started = performance.now();
  const quietly = (write: Promise<void>) => void write.catch((error: unknown) => op.log.debug({ deployment: deployment.id, error: describeError(error) }, "could not update the live view"));
  await op.queues.startRunning({ ...deployment, startedAt: new Date().toISOString() }).catch(() => undefined);
  try {
    return await run((host, phase) => {
      quietly(op.queues.runningStep(deployment.id, host, phase, Math.round(performance.now() - started)));
      observe?.(host, phase);
    });
  } finally {
    quietly(op.queues.endRunning(deployment.id));
  }
}
