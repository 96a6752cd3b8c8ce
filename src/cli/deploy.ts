import { TidemarkError } from "../core/errors.js";
import { planJson, renderPlan } from "../core/render-plan.js";
import { changesNothing, type Deployment } from "../pipeline/deploy.js";
import { prepareEnvironmentPlan, type PreparedPlan } from "../pipeline/plan-environment.js";
import { resolveEnvironment, resolveUserRef } from "../pipeline/read-source.js";
import type { HostPhase } from "../remote/apply-host.js";
import { KnownHosts } from "../remote/known-hosts.js";
import { readSshKey } from "../remote/ssh-key.js";
import type { Store } from "../store/store.js";
import { openMirror, openStore, secretsOpener, type Context } from "./context.js";
import { EXIT } from "./exit-codes.js";
import { deployReported, reportNoChange } from "./reporting.js";

export interface DeployFlags {
  ref?: string;
  yes?: boolean;
  planOnly?: boolean;
  settle: number;
}

/** How the deploy command talks to the person running it. */
export interface Terminal {
  /** True when a person is at the keyboard: progress is drawn live and a confirmation can be asked. */
  interactive: boolean;
  ask: (question: string) => Promise<boolean>;
  /** Progress and prompts; stderr, so that stdout stays the result. */
  err: (text: string) => void;
}

/**
 * `tidemark deploy <env>`: plan, confirm, roll out over SSH, record, report
 * to GitHub when it is configured; exit code by the worst host outcome. A
 * plan that changes no host deploys and records nothing.
 */
export async function deployCommand(ctx: Context, terminal: Terminal, environment: string, flags: DeployFlags): Promise<number> {
  const mirror = await openMirror(ctx);
  const store = await openStore(ctx, environment);
  const source = flags.ref ? await resolveUserRef(mirror, flags.ref) : await resolveEnvironment(mirror, environment);
  const prepared = await prepareEnvironmentPlan(mirror, store, environment, source, { open: secretsOpener(ctx) });
  if (prepared.pin && !flags.planOnly) {
    throw new TidemarkError(
      "ENV_PINNED",
      `${environment} is pinned (${prepared.pin})`,
      `tidemark unpin ${environment} first, or move the pin with tidemark rollback ${environment} <target>`,
    );
  }
  const planText = `source ${source.commit.slice(0, 7)} (${source.ref})${prepared.returnTo ? `, a return to ${prepared.returnTo.id}` : ""}\n${renderPlan(prepared.plan)}`;
  if (flags.planOnly) {
    ctx.out(ctx.json ? `${JSON.stringify(planJson(prepared.plan, source), null, 2)}\n` : planText);
    return EXIT.ok;
  }
  (ctx.json ? terminal.err : ctx.out)(planText);
  if (changesNothing(prepared)) return noChange(ctx, terminal, store, prepared);
  if (!flags.yes) {
    if (!terminal.interactive)
      throw new TidemarkError(
        "CONFIRMATION_NEEDED",
        "refusing to deploy without confirmation: no terminal to ask",
        "pass --yes to deploy from a script",
      );
    if (!(await terminal.ask(`deploy ${environment} to ${prepared.plan.hosts.length} host(s)? [y/N] `))) {
      terminal.err("nothing deployed\n");
      return EXIT.ok;
    }
  }

  const progress =
    terminal.interactive && !ctx.json
      ? liveProgress(
          terminal.err,
          prepared.plan.hosts.map((host) => host.host),
        )
      : (host: string, phase: HostPhase) => terminal.err(`${host}: ${phase}\n`);
  const { deployment, reported } = await deployReported(ctx, terminal.err, mirror, store, prepared, {
    ssh: { privateKey: ctx.settings.sshKey ? readSshKey(ctx.settings.sshKey) : undefined, agent: ctx.settings.sshAgent },
    knownHosts: ctx.settings.knownHosts ? KnownHosts.read(ctx.settings.knownHosts) : undefined,
    trigger: "cli",
    settleMs: flags.settle * 1000,
    observe: progress,
  });
  if (ctx.json) ctx.out(`${JSON.stringify(deploymentJson(deployment), null, 2)}\n`);
  else ctx.out(summary(deployment));
  if (deployment.shareError) terminal.err(`warning: ${deployment.shareError}\n`);
  // The result is out first; then at most githubReportTimeout for GitHub, whose mood never changes the exit code.
  await reported();
  return deploymentExitCode(deployment);
}

/**
 * Every host already runs this config: no deployment, no history entry. The
 * commit hears "no change" unless it is the one deployed last (its status
 * says how that went), as the operator does.
 */
async function noChange(ctx: Context, terminal: Terminal, store: Store, prepared: PreparedPlan): Promise<number> {
  const { environment } = prepared.plan;
  const last = (await store.history(environment, 20)).find((entry) => entry.trigger !== "unpin");
  if (last?.sourceCommit !== prepared.source.commit) await reportNoChange(ctx, terminal.err, prepared);
  const hosts = [...prepared.desired.hosts.keys()].sort().map((host) => ({ host, outcome: "unchanged" as const }));
  if (ctx.json)
    ctx.out(
      `${JSON.stringify({ schema: "tidemark.no-change/v1", environment, sourceCommit: prepared.source.commit, sourceRef: prepared.source.ref, hosts }, null, 2)}\n`,
    );
  else ctx.out(`no change: every host of ${environment} already runs this config; nothing deployed, nothing recorded\n`);
  return EXIT.ok;
}

export function deploymentExitCode(deployment: Deployment): number {
  const outcomes = new Set(deployment.hosts.map((host) => host.outcome));
  if (["failed", "rolled-back", "rollback-failed", "skipped"].some((outcome) => outcomes.has(outcome as never))) return EXIT.failed;
  if (outcomes.has("unreachable")) return EXIT.unreachable;
  return EXIT.ok;
}

/** The deployment for scripts: `tidemark.deployment/v1`, documented in docs/cli.md. */
export function deploymentJson(deployment: Deployment): object {
  return { schema: "tidemark.deployment/v1", ...deployment };
}

export function summary(deployment: Deployment): string {
  const width = Math.max(4, ...deployment.hosts.map((host) => host.host.length));
  const outcomeWidth = Math.max(7, ...deployment.hosts.map((host) => host.outcome.length));
  const rows = deployment.hosts.map((host) =>
    `${host.host.padEnd(width)}  ${host.outcome.padEnd(outcomeWidth)}  ${host.detail ?? ""}`.trimEnd(),
  );
  const logs = deployment.hosts.filter((host) => host.log).map((host) => `\n${host.host}:\n${indent(host.log!)}`);
  const title = `\ndeployment ${deployment.id}: ${deployment.environment} at ${deployment.sourceCommit.slice(0, 7)}${deployment.returnTo ? `, a return to ${deployment.returnTo.id}` : ""}`;
  return [title, `${"host".padEnd(width)}  ${"outcome".padEnd(outcomeWidth)}  detail`, ...rows, ...logs, ""].join("\n");
}

const indent = (text: string) =>
  text
    .split("\n")
    .map((line) => `  ${line}`)
    .join("\n");

/** One line per host, redrawn in place as hosts move through their phases. */
function liveProgress(write: (text: string) => void, hosts: string[]): (host: string, phase: HostPhase) => void {
  const phases = new Map(hosts.map((host) => [host, "waiting"]));
  const width = Math.max(...hosts.map((host) => host.length));
  let drawn = false;
  return (host, phase) => {
    phases.set(host, phase);
    const lines = [...phases].map(([name, state]) => `  ${name.padEnd(width)}  ${state}\x1b[K`);
    write(`${drawn ? `\x1b[${lines.length}A` : ""}${lines.join("\n")}\n`);
    drawn = true;
  };
}
