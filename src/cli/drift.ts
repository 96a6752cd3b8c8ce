import { TidemarkError } from "../core/errors.js";
import { checkEnvironmentDrift, type DriftReport } from "../pipeline/drift.js";
import { readSourceConfig, resolveEnvironment, unknownEnvironment } from "../pipeline/read-source.js";
import { KnownHosts } from "../remote/known-hosts.js";
import { readSshKey } from "../remote/ssh-key.js";
import { openPerLease } from "../remote/ssh-pool.js";
import { openMirror, openStore, type Context } from "./context.js";
import { EXIT } from "./exit-codes.js";

export interface DriftFlags {
  host?: string[];
  deep?: boolean;
}

/**
 * `tidemark drift <env> [--host H] [--deep] [--json]`: each host against the
 * release the store records for it, one exec per host; exit 0 clean, 5
 * drift, 3 when a host could not be checked (and none drifted).
 */
export async function driftCommand(ctx: Context, environment: string, flags: DriftFlags): Promise<number> {
  const [mirror, store] = await Promise.all([openMirror(ctx), openStore(ctx, environment)]);
  const config = await readSourceConfig(mirror, (await resolveEnvironment(mirror, environment)).commit);
  if (!config.environments[environment]) throw unknownEnvironment(environment, config);
  const live = await store.liveHosts(environment);
  const strangers = (flags.host ?? []).filter((host) => !live.get(host)?.tree);
  if (strangers.length > 0)
    throw new TidemarkError(
      "HOST_NOT_DEPLOYED",
      `${strangers.join(", ")}: no release of ${environment} is recorded for ${strangers.length === 1 ? "it" : "them"}, so there is nothing to compare with`,
      `tidemark status ${environment} lists the hosts deployed; check the name, or deploy first`,
    );
  const connections = openPerLease({
    privateKey: ctx.settings.sshKey ? readSshKey(ctx.settings.sshKey) : undefined,
    agent: ctx.settings.sshAgent,
  });
  const report = await checkEnvironmentDrift(store, config, environment, {
    connections,
    knownHosts: ctx.settings.knownHosts ? KnownHosts.read(ctx.settings.knownHosts) : undefined,
    ...(flags.host && flags.host.length > 0 ? { hosts: flags.host } : {}),
    deep: flags.deep === true,
  });
  ctx.out(ctx.json ? `${JSON.stringify(driftJson(report), null, 2)}\n` : driftText(report));
  return driftExitCode(report);
}

export function driftExitCode(report: DriftReport): number {
  if (report.hosts.some((host) => host.state === "drift")) return EXIT.drift;
  if (report.hosts.some((host) => host.state !== "clean")) return EXIT.unreachable;
  return EXIT.ok;
}

/** `tidemark.drift/v1`, documented in docs/cli.md. */
export function driftJson(report: DriftReport): object {
  return { schema: "tidemark.drift/v1", environment: report.environment, checkedAt: report.checkedAt.toISOString(), hosts: report.hosts };
}

function driftText(report: DriftReport): string {
  const drifted = report.hosts.filter((host) => host.state === "drift").length;
  const lines = [
    report.hosts.length === 0
      ? `${report.environment}: no host has a release recorded; nothing to check`
      : `${report.environment}: ${drifted === 0 ? "no drift" : `drift on ${drifted} of ${report.hosts.length} hosts`}`,
  ];
  const width = Math.max(4, ...report.hosts.map((host) => host.host.length));
  for (const host of report.hosts) {
    const unknown = host.unknown ? `; not compared (no snapshot, deployed before Tidemark took them): ${host.unknown.join(", ")}` : "";
    lines.push(`  ${host.host.padEnd(width)}  ${host.state}${host.detail ? `: ${host.detail}` : ""}${unknown}`);
    for (const finding of host.findings) lines.push(`  ${" ".repeat(width)}    ${finding.kind.padEnd(13)} ${finding.path}`);
  }
  return `${lines.join("\n")}\n`;
}
