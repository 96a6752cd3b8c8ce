import { decideIntake } from "../core/decide.js";
import { statusReports } from "../core/reports.js";
import { queuedStatus } from "../core/statuses.js";
import { resolveTrack } from "../core/track.js";
import type { RefsJob } from "../queue/queues.js";
import { environmentUrl } from "./links.js";
import type { Operator } from "./operator.js";
import { trackingConfig } from "./tracking-config.js";
import { previewPullRequest } from "./preview.js";

/** What a push or a poll did to one environment. */
export type IntakeResult =
  | { environment: string; action: "requested"; ref: string; commit: string }
  | { environment: string; action: "current"; commit: string }
  | { environment: string; action: "stays"; reason: string }
  | { environment: string; action: "previewed"; pullRequest: number; commit: string; hosts?: string[]; invalid?: number };

/**
 * Turns a push hint or a poll into deployment requests: for every
 * environment whose tracking rule the pushed ref matches (a poll: every
 * environment), where the rule points now, asked for unless it was asked for
 * already. Deleted refs and tags older than the one deployed move nothing.
 * What to do is core/decide.ts's `decideIntake`; this gathers and carries out.
 */
export async function takeIn(op: Operator, job: RefsJob): Promise<IntakeResult[]> {
  if (job.kind === "pull-request") return previewPullRequest(op, job);
  await op.mirror.fetch();
  const config = await trackingConfig(op.mirror);
  const refs = await op.mirror.refs();
  const results: IntakeResult[] = [];
  for (const [environment, { track }] of Object.entries(config.environments)) {
    const decision = decideIntake({
      environment,
      track,
      trigger: job,
      resolution: resolveTrack(track, refs),
      lastRequested: await op.queues.lastRequested(environment),
      retrying: job.kind === "poll" && ((await op.queues.isWaiting(environment)) || (await op.queues.isBehind(environment))),
    });
    if (decision.kind === "ignored") continue;
    if (decision.kind === "stays") {
      results.push({ environment, action: "stays", reason: decision.reason });
      continue;
    }
    if (decision.note) await op.queues.noteRequested(environment, decision.note);
    if (decision.kind === "older") {
      results.push({ environment, action: "stays", reason: decision.reason });
    } else if (decision.kind === "current") {
      results.push({ environment, action: "current", commit: decision.commit });
    } else {
      const { ref, commit } = decision;
      await op.queues.requestDeployment({ environment, trigger: job.kind === "push" ? "webhook" : "poll", requested: { ref, commit } });
      // Asked again for a commit a pin holds back: its status already says why it waits.
      if (!decision.again) await op.report(statusReports([queuedStatus(environment, commit, environmentUrl(op.settings, environment))]));
      results.push({ environment, action: "requested", ref, commit });
    }
  }
  return results;
}
