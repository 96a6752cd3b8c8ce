import { cliReportingSettings, settingsRedactor, type ReportingSettings } from "../config/settings.js";
import { describeError } from "../core/errors.js";
import type { Redactor } from "../core/redact.js";
import { abortedReports, finalReports, redactReport, startReports, statusReports, type Report } from "../core/reports.js";
import { noChangeStatus } from "../core/statuses.js";
import type { Unposted } from "../github/direct-reports.js";
import { deploymentUrl, environmentUrl } from "../operator/links.js";
import { deployPlan, deploymentFacts, type DeployOptions, type Deployment } from "../pipeline/deploy.js";
import type { PreparedPlan } from "../pipeline/plan-environment.js";
import type { SourceMirror } from "../git/mirror.js";
import { newDeploymentId, type Store } from "../store/store.js";
import type { Context } from "./context.js";

/**
 * What `tidemark deploy` and `rollback` post to GitHub: the operator's
 * statuses and Deployments, built by the same functions, posted by the
 * process itself (no Redis) while it deploys, and waited for at the end for
 * at most githubReportTimeout. Octokit is loaded only when GitHub is configured.
 */
interface Reporting {
  settings?: ReportingSettings;
  send(reports: Report[]): void;
  /** Waits for the reports (bounded); says on stderr what did not reach GitHub. */
  finish(): Promise<void>;
}

async function openReporting(ctx: Context, err: (text: string) => void): Promise<Reporting> {
  const settings = cliReportingSettings(ctx.settings);
  if (!settings) {
    err("note: nothing is reported to GitHub (no TIDEMARK_GITHUB_TOKEN or GitHub App configured)\n");
    return { send: () => undefined, finish: () => Promise.resolve() };
  }
  const redact = settingsRedactor(ctx.settings);
  const say = (fields: Record<string, unknown>, message: string) =>
    err(`warning: ${redact([message, ...Object.entries(fields).map(([key, value]) => `${key} ${String(value)}`)].join("; "))}\n`);
  // Loaded here, not at the top: a command that reports nothing loads no Octokit.
  const { directReports } = await import("../github/direct-reports.js");
  // Octokit logs every failed request as an error; the command names at the end what did not get through instead.
  const reports = directReports(settings, { warn: say, error: () => undefined });
  return {
    settings,
    send: (batch) => reports.send(batch.map((report) => redactReport(report, redact))),
    finish: async () => {
      const unposted = await reports.finish(settings.githubReportTimeout * 1000);
      if (unposted.length > 0) err(`warning: ${unpostedText(unposted, settings.githubReportTimeout, redact)}\n`);
    },
  };
}

function unpostedText(unposted: Unposted[], timeout: number, redact: Redactor): string {
  const what = unposted.map(({ report }) =>
    report.kind === "status" ? `${report.status.context} ${report.status.state}` : `GitHub deployment ${report.deployment.state}`,
  );
  const sha = unposted[0]!.report.kind === "status" ? unposted[0]!.report.status.sha : unposted[0]!.report.deployment.sha;
  return redact(
    `not posted to GitHub on ${sha.slice(0, 7)} (tried for up to ${timeout} s): ${what.join(", ")}; ${unposted[0]!.reason.split("\n")[0]!}`,
  );
}

/**
 * A deployment from the CLI, reported: pending as it starts, every host's
 * final status and then the environment's once it is recorded, or an error
 * if it stops before. The caller prints its result, then awaits `reported`.
 */
export async function deployReported(
  ctx: Context,
  err: (text: string) => void,
  mirror: SourceMirror,
  store: Store,
  prepared: PreparedPlan,
  options: Omit<DeployOptions, "id" | "redact">,
): Promise<{ deployment: Deployment; reported: () => Promise<void> }> {
  const reporting = await openReporting(ctx, err);
  const id = newDeploymentId();
  const facts =
    reporting.settings && deploymentFacts(prepared, id, { ...reporting.settings, targetUrl: deploymentUrl(reporting.settings, id) });
  if (facts)
    reporting.send(
      startReports(
        facts,
        prepared.plan.hosts.map((host) => host.host),
      ),
    );
  let deployment: Deployment;
  try {
    // The same redaction as the operator's: a unit's output reaches the store, the page and the statuses without the configured secrets.
    deployment = await deployPlan(mirror, store, prepared, { ...options, id, redact: settingsRedactor(ctx.settings) });
  } catch (error) {
    if (facts) reporting.send(abortedReports(facts, describeError(error).split("\n")[0]!));
    await reporting.finish();
    throw error;
  }
  if (facts) reporting.send(finalReports({ ...facts, hosts: deployment.hosts }));
  return { deployment, reported: () => reporting.finish() };
}

/** A commit that changes no host: nothing is recorded, and the commit is told so, as the operator does. */
export async function reportNoChange(ctx: Context, err: (text: string) => void, prepared: PreparedPlan): Promise<void> {
  const reporting = await openReporting(ctx, err);
  const { environment } = prepared.plan;
  if (reporting.settings)
    reporting.send(statusReports([noChangeStatus(environment, prepared.source.commit, environmentUrl(reporting.settings, environment))]));
  await reporting.finish();
}
