import { originNote } from "./layers.js";
import type { Change, Plan } from "./plan.js";

const SIGN: Record<Change, string> = { added: "+", changed: "~", removed: "-" };

/** The plan for people: one block per host, `+`/`~`/`-` per app and file, then the units and the host paths it takes over. */
export function renderPlan(plan: Plan): string {
  if (plan.hosts.length === 0) return `${plan.environment}: nothing to do, every host is up to date\n`;
  const lines = [`${plan.environment}: ${plan.hosts.length} host${plan.hosts.length === 1 ? "" : "s"} would change`];
  for (const host of plan.hosts) {
    lines.push("", `${host.host}  ${short(host.from)} -> ${short(host.to)}  (rollback available)`);
    for (const app of host.apps) {
      lines.push(`  ${SIGN[app.change]} ${app.app}`);
      for (const file of app.files)
        lines.push(
          `      ${SIGN[file.change]} ${file.path}${file.secret ? `  secret ${file.change}` : ""}${withSpace(originNote(host.host, file))}`,
        );
    }
    if (host.units.enable.length > 0) lines.push(`  enable  ${host.units.enable.join(" ")}`);
    if (host.units.restart.length > 0) lines.push(`  restart ${host.units.restart.join(" ")}`);
    if (host.units.stop.length > 0) lines.push(`  stop    ${host.units.stop.join(" ")}`);
    for (const hook of host.hooks)
      lines.push(
        `  hook    ${hook.phase} ${hook.app}/${hook.name}${hook.once ? "  (once: on the first host of the rollout only)" : ""}${hook.irreversible ? "  (irreversible)" : ""}`,
      );
    for (const path of host.takesOver)
      lines.push(`  takes over ${path} (what is there now is kept on the host, and put back when the link goes)`);
  }
  return `${lines.join("\n")}\n`;
}

/** The plan as JSON for scripts; the shape is documented in docs/cli.md ("Plan JSON"). */
export function planJson(plan: Plan, source: { commit: string; ref: string }): object {
  return { schema: "tidemark.plan/v1", environment: plan.environment, source, hosts: plan.hosts };
}

const withSpace = (note: string) => (note ? `  ${note}` : "");

function short(oid: string | null): string {
  return oid === null ? "(empty)" : oid.slice(0, 7);
}
