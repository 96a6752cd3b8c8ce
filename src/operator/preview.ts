import { describeError } from "../core/errors.js";
import { InvalidConfigError } from "../core/problems.js";
import { statusReports } from "../core/reports.js";
import { invalidPlanStatus, planStatus, type CommitStatus } from "../core/statuses.js";
import { prepareEnvironmentPlan } from "../pipeline/plan-environment.js";
import type { PullRequestHint } from "../queue/queues.js";
import type { IntakeResult } from "./intake.js";
import { planUrl } from "./links.js";
import type { Operator } from "./operator.js";
import { trackingConfig } from "./tracking-config.js";

/**
 * A pull request's plan preview: for every environment that tracks its base
 * branch, what merging the head would change against what runs now, posted
 * as `tidemark/plan/<env>` on the head commit. Pure reading: no host is
 * contacted and nothing in the pull request runs, so a fork's is as safe as any.
 */
export async function previewPullRequest(op: Operator, hint: PullRequestHint): Promise<IntakeResult[]> {
  await op.mirror.fetch();
  await op.mirror.fetchPullRequest(hint.number);
  if ((await op.mirror.expandCommit(hint.head)) !== hint.head) {
    return [
      {
        environment: "*",
        action: "stays",
        reason: `pull request #${hint.number} no longer has ${hint.head.slice(0, 7)}: a newer push replaced it`,
      },
    ];
  }
  const config = await trackingConfig(op.mirror);
  const results: IntakeResult[] = [];
  const statuses: CommitStatus[] = [];
  for (const [environment, { track }] of Object.entries(config.environments)) {
    if (!("branch" in track) || track.branch !== hint.base) continue;
    const link = planUrl(op.settings, environment, hint.head);
    try {
      await op.store.sync(environment);
    } catch (error) {
      op.log.warn({ environment, error: describeError(error) }, "store remote unreachable: planning with the local store");
    }
    try {
      const prepared = await prepareEnvironmentPlan(op.mirror, op.store, environment, {
        ref: `refs/pull/${hint.number}/head`,
        commit: hint.head,
      });
      statuses.push(planStatus(environment, hint.head, prepared.plan, link));
      results.push({
        environment,
        action: "previewed",
        pullRequest: hint.number,
        commit: hint.head,
        hosts: prepared.plan.hosts.map((host) => host.host),
      });
    } catch (error) {
      if (!(error instanceof InvalidConfigError)) throw error;
      statuses.push(invalidPlanStatus(environment, hint.head, error.problems, link));
      results.push({ environment, action: "previewed", pullRequest: hint.number, commit: hint.head, invalid: error.problems.length });
    }
  }
  await op.report(statusReports(statuses));
  return results;
}
