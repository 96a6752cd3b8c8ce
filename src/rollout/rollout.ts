import type { HostOutcomeKind } from "../core/outcome.js";
import type { SourceConfig } from "../core/config.js";
import type { HostResult } from "../remote/apply-host.js";

export type RolloutPolicy = SourceConfig["rollout"];

/** The detail of a host not started because the operator was shutting down: the job runs again and deploys it. */
export const STOPPED = "the operator stopped before this host (shutdown); the next run deploys it";

const FAILED: ReadonlySet<HostOutcomeKind> = new Set(["rolled-back", "rollback-failed", "failed", "unreachable"]);

/**
 * Runs hosts under the rollout policy: `canary` hosts first (all must succeed
 * before the rest start), then the rest, at most `maxParallel` at once. More
 * than `maxFailures` failed hosts halt the rollout: hosts not started are
 * `skipped` (`halted`); with `onFailure: rollback-all`, the hosts already deployed in this
 * rollout are returned to their previous deployment by `undo`. An aborted
 * `stop` signal (the operator shutting down) starts no new host either
 * (`skipped`, `stopped`: the job runs again for them); the hosts in flight finish.
 */
export async function runRollout(
  hosts: string[],
  policy: RolloutPolicy,
  apply: (host: string) => Promise<HostResult>,
  undo: (host: string) => Promise<HostResult>,
  stop?: AbortSignal,
): Promise<HostResult[]> {
  const results = new Map<string, HostResult>();
  let failures = 0;
  const halted = () => failures > policy.maxFailures || stop?.aborted === true;

  async function wave(batch: string[]): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < batch.length && !halted()) {
        const host = batch[next++]!;
        const result = await apply(host);
        if (FAILED.has(result.outcome)) failures++;
        results.set(host, result);
      }
    };
    await Promise.all(Array.from({ length: Math.min(policy.maxParallel, batch.length) }, worker));
  }

  const canaries = hosts.slice(0, policy.canary);
  await wave(canaries);
  // A canary that did not succeed stops the rest, whatever maxFailures allows.
  const canaryFailed = canaries.some((host) => results.has(host) && results.get(host)!.outcome !== "deployed");
  if (canaryFailed) failures = Math.max(failures, policy.maxFailures + 1);
  if (!halted()) await wave(hosts.slice(policy.canary));

  if (failures > policy.maxFailures && policy.onFailure === "rollback-all") {
    const done = hosts.filter((host) => results.get(host)?.outcome === "deployed");
    await Promise.all(
      done.map(async (host) => {
        const undone = await undo(host);
        results.set(
          host,
          undone.outcome === "deployed"
            ? { ...undone, outcome: "rolled-back", detail: "rolled back with the rollout (rollout.onFailure: rollback-all)" }
            : {
                ...undone,
                outcome: "rollback-failed",
                detail: `rollout.onFailure: rollback-all could not undo it: ${undone.detail ?? undone.outcome}`,
              },
        );
      }),
    );
  }
  const stopped = failures <= policy.maxFailures;
  const reason = stopped
    ? STOPPED
    : canaryFailed
      ? "a canary host did not succeed"
      : `more than ${policy.maxFailures} host(s) failed (rollout.maxFailures)`;
  return hosts.map(
    (host) => results.get(host) ?? { host, outcome: "skipped", skip: stopped ? "stopped" : "halted", detail: `not started: ${reason}` },
  );
}
