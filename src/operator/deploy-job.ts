import { UnrecoverableError } from "bullmq";
import { DEFAULT_DRIFT } from "../core/config.js";
import { describeError, TidemarkError } from "../core/errors.js";
import { afterRollout, decide, type DeployDecision, type DeployState } from "../core/decide.js";
import { deploymentOutcome, type DeploymentOutcome, type HostOutcome } from "../core/outcome.js";
import { InvalidConfigError } from "../core/problems.js";
import { finalReports, startReports, statusReports } from "../core/reports.js";
import { convergedStatuses, invalidConfigStatus, noChangeStatus, pinnedStatus, supersededStatus } from "../core/statuses.js";
import { deployPlan, deploymentFacts } from "../pipeline/deploy.js";
import { prepareEnvironmentPlan, type PreparedPlan } from "../pipeline/plan-environment.js";
import { trackEnvironment } from "../pipeline/read-source.js";
import type { DeployJob, RunningDeployment } from "../queue/queues.js";
import type { PhaseObserver } from "../remote/apply-host.js";
import { newDeploymentId } from "../store/store.js";
import { deploymentUrl, environmentUrl } from "./links.js";
import type { Operator } from "./operator.js";

/** What a deploy job did; kept by BullMQ as the job's return value (no logs, no secrets). */
export type DeployJobResult = (
  | {
      status: "deployed";
      id: string;
      outcome: DeploymentOutcome;
      sourceRef: string;
      sourceCommit: string;
      hosts: Array<HostOutcome & { durationMs?: number; uploadedBytes?: number }>;
      returnTo?: { id: string; sourceCommit: string };
    }
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
 * and told so. Errors that a retry cannot fix end the job at once. What
 * to do is core/decide.ts's `decide`; this gathers its state and carries it out.
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
    // decide asks for what it lacks, cheapest first: the history, then the plan (which reads trees).
    const state: DeployState = { environment, track, resolution };
    let decision = decide(state);
    if (decision.kind === "read-history") {
      commit = decision.commit;
      state.history = await readHistory(op, environment, seen);
      decision = decide(state);
      // Unless a pin still holds, the commit it held back waits no more.
      if (decision.kind !== "pinned") await op.queues.clearWaiting(environment);
    }
    if (decision.kind === "pinned") {
      if (await op.queues.markWaiting(environment, decision.commit))
        await op.report(
          statusReports([pinnedStatus(environment, decision.commit, decision.pin, environmentUrl(op.settings, environment))]),
        );
      return { environment, status: "stays", reason: decision.reason, superseded: [] };
    }
    if (decision.kind === "stays" || decision.kind === "older")
      return { environment, status: "stays", reason: decision.reason, superseded: [] };
    if (decision.kind !== "read-plan") throw new Error(`decide ended on ${decision.kind} before the plan was read`);
    const prepared = await prepareEnvironmentPlan(
      op.mirror,
      op.store,
      environment,
      { ref: decision.ref, commit: decision.commit },
      { open: op.open },
    );
    // A pushed `drift:` takes effect with the config that brings it.
    await op.queues
      .syncDriftSchedule(environment, prepared.config.environments[environment]?.drift ?? DEFAULT_DRIFT)
      .catch((error: unknown) => op.log.warn({ environment, error: describeError(error) }, "could not schedule drift checks"));
    const planned = decide({
      ...state,
      plan: {
        changing: prepared.plan.hosts.map((host) => host.host),
        desired: [...prepared.desired.hosts.keys()],
        sameTree: prepared.envTreeOid === prepared.lastTree,
      },
    });
    return await carryOut(op, job, planned, prepared, state.history?.requested ?? [], stop, observe);
  } catch (error) {
    if (error instanceof InvalidConfigError && commit)
      await op.report(statusReports([invalidConfigStatus(environment, commit, error.problems, environmentUrl(op.settings, environment))]));
    // A broken config tree or an unknown environment stays broken until someone pushes: no retry.
    if (error instanceof InvalidConfigError || (error instanceof TidemarkError && ["ENV_UNKNOWN", "REPO_URL"].includes(error.code))) {
      throw new UnrecoverableError(describeError(error));
    }
    throw error;
  }
}

/** What came before this job: the environment's newest store entry, and the commits asked for up to the job's start. */
async function readHistory(op: Operator, environment: string, seen: number): Promise<NonNullable<DeployState["history"]>> {
  try {
    await op.store.sync(environment);
  } catch (error) {
    // The hosts' lock and stale-plan check keep a deployment planned on an out-of-date store safe.
    op.log.warn({ environment, error: describeError(error) }, "store remote unreachable: planning with the local store");
  }
  const [last] = await op.store.history(environment, 1);
  return { last, requested: await op.queues.requested(environment, seen) };
}

/** Carries out what decide settled on with the plan in hand; the commits it settles are forgotten in Redis as it reports them. */
async function carryOut(
  op: Operator,
  job: DeployJob,
  decision: DeployDecision,
  prepared: PreparedPlan,
  requested: readonly string[],
  stop: AbortSignal,
  observe: PhaseObserver | undefined,
): Promise<DeployJobResult> {
  const { environment } = job;
  if (decision.kind === "up-to-date") {
    const { id, ref, commit, superseded } = decision;
    await op.queues.forgetRequested(environment, requested);
    const facts = {
      id,
      environment,
      sourceCommit: commit,
      hostStatuses: op.settings.hostStatuses && prepared.desired.hosts.size <= op.settings.hostStatusLimit,
      targetUrl: deploymentUrl(op.settings, id),
    };
    // The hosts the last attempt left behind, finished since by another: the commit's statuses turn green, once.
    const converged =
      decision.finished.length > 0 && (await op.queues.firstConverged(environment, commit))
        ? convergedStatuses(facts, [...prepared.desired.hosts.keys()], decision.finished)
        : [];
    await op.report(statusReports([...converged, ...superseded.map((sha) => supersededStatus(environment, sha, commit, facts.targetUrl))]));
    await op.queues.markBehind(environment, false);
    return { environment, status: "up-to-date", sourceRef: ref, sourceCommit: commit, superseded };
  }
  if (decision.kind === "no-change") {
    // Only other environments' files changed: every host runs this config already. No deployment, no history entry; one word on the commit.
    const { ref, commit, superseded } = decision;
    await op.queues.forgetRequested(environment, requested);
    const link = environmentUrl(op.settings, environment);
    await op.report(
      statusReports([
        noChangeStatus(environment, commit, link),
        ...superseded.map((sha) => supersededStatus(environment, sha, commit, link)),
      ]),
    );
    await op.queues.markBehind(environment, false);
    return { environment, status: "no-change", sourceRef: ref, sourceCommit: commit, superseded };
  }
  if (decision.kind !== "deploy") throw new Error(`decide ended on ${decision.kind} with the plan read`);
  if (stop.aborted) throw new StoppedError("the operator is shutting down; another worker deploys it");

  const { ref, commit, superseded, hosts, hold } = decision;
  const id = newDeploymentId();
  await op.queues.forgetRequested(environment, requested);
  const facts = deploymentFacts(prepared, id, { ...op.settings, targetUrl: deploymentUrl(op.settings, id) });
  await op.report(startReports(facts, hosts, superseded));

  const deployment = await showRunning(op, { id, environment, sourceCommit: commit, sourceRef: ref, hosts }, observe, (running) =>
    deployPlan(op.mirror, op.store, prepared, { ...op.deploy, id, superseded, trigger: job.trigger, stop, observe: running, hold }),
  );
  if (deployment.shareError)
    op.log.warn(
      { environment, deployment: deployment.id, error: deployment.shareError },
      "deployment recorded locally; the store remote gets it at the next sync",
    );
  const { stopped, behind } = afterRollout(deployment.hosts);
  // One batch: every host's final status, then the environment's, then the GitHub deployment's.
  if (!stopped) await op.report(finalReports({ ...facts, hosts: deployment.hosts }));
  // Hosts a passing failure left behind (not the ones where the commit itself failed) are tried again at the next polls.
  await op.queues.markBehind(environment, behind);
  if (stopped)
    throw new StoppedError(
      `the operator stopped during deployment ${deployment.id}; the hosts not started are deployed when the job runs again`,
    );
  return {
    environment,
    status: "deployed",
    id: deployment.id,
    outcome: deploymentOutcome(deployment.hosts),
    sourceRef: deployment.sourceRef,
    sourceCommit: deployment.sourceCommit,
    hosts: deployment.hosts.map(({ host, outcome, detail, durationMs, uploadedBytes }) => ({
      host,
      outcome,
      ...(detail ? { detail } : {}),
      ...(durationMs !== undefined ? { durationMs } : {}),
      ...(uploadedBytes !== undefined ? { uploadedBytes } : {}),
    })),
    ...(deployment.returnTo ? { returnTo: deployment.returnTo } : {}),
    superseded,
  };
}

/** Shows the deployment as under way on the operator's page while it runs; a Redis hiccup costs the live view, never the deployment. */
async function showRunning<T>(
  op: Operator,
  deployment: Omit<RunningDeployment, "steps" | "startedAt">,
  observe: PhaseObserver | undefined,
  run: (observe: PhaseObserver) => Promise<T>,
): Promise<T> {
  const started = performance.now();
  const quietly = (write: Promise<void>) =>
    void write.catch((error: unknown) =>
      op.log.debug({ deployment: deployment.id, error: describeError(error) }, "could not update the live view"),
    );
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
