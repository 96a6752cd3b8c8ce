import { statusReports } from "../core/reports.js";
import { queuedStatus } from "../core/statuses.js";
import { movesForward, resolveTrack, tracksRef } from "../core/track.js";
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
 */
export async function takeIn(op: Operator, job: RefsJob): Promise<IntakeResult[]> {
  if (job.kind === "pull-request") return previewPullRequest(op, job);
  await op.mirror.fetch();
  const config = await trackingConfig(op.mirror);
  const refs = await op.mirror.refs();
  const results: IntakeResult[] = [];
  for (const [environment, { track }] of Object.entries(config.environments)) {
    if (job.kind === "push" && !tracksRef(track, job.ref)) continue;
    if (job.kind === "push" && job.deleted) {
      results.push({ environment, action: "stays", reason: `${job.ref} was deleted; ${environment} stays where it is` });
      continue;
    }
    const resolved = resolveTrack(track, refs);
    if (resolved.ref === null) {
      results.push({ environment, action: "stays", reason: `${resolved.reason}; ${environment} stays where it is` });
      continue;
    }
    // The pushed commit, if it is what the rule follows, is reported superseded should a newer one be deployed instead.
    if (job.kind === "push" && job.ref === resolved.ref) await op.queues.noteRequested(environment, job.after);
    const last = await op.queues.lastRequested(environment);
    // A commit held back by a pin, or that some hosts do not run yet after a passing failure, is asked for again at each poll.
    const again = last?.commit === resolved.commit;
    if (again && !(job.kind === "poll" && ((await op.queues.isWaiting(environment)) || (await op.queues.isBehind(environment))))) {
      results.push({ environment, action: "current", commit: resolved.commit });
      continue;
    }
    if (!movesForward(track, last?.ref, resolved.ref)) {
      results.push({ environment, action: "stays", reason: `${resolved.ref} is older than ${last!.ref}; ${environment} stays where it is` });
      continue;
    }
    await op.queues.requestDeployment({ environment, trigger: job.kind === "push" ? "webhook" : "poll", requested: { ref: resolved.ref, commit: resolved.commit } });
    // Asked again for a commit a pin holds back: its status already says why it waits.
    if (!again) await op.report(statusReports([queuedStatus(environment, resolved.commit, environmentUrl(op.settings, environment))]));
    results.push({ environment, action: "requested", ref: resolved.ref, commit: resolved.commit });
  }
  return results;
}
