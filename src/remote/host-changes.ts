import type { AppTree, Check, HostTree } from "../core/config.js";
import { appLinks, SYSTEMD_PREFIX } from "../core/links.js";
import type { HostPlan } from "../core/plan.js";
import { appDir, type SwitchSpec } from "./commands.js";

/** What applying one host plan means on the host, worked out from the plan and both trees; pure. */
export interface HostChanges {
  plan: HostPlan;
  /** The apps this plan puts in place, with their trees (files and manifest). */
  incoming: Map<string, AppTree>;
  switch: SwitchSpec;
  /** Units whose state decides success, and the app checks that must pass. */
  units: string[];
  checks: Array<{ app: string; check: Check }>;
}

/**
 * `mode: "forward"` applies the plan; `mode: "rollback"` applies the reverse
 * plan of a failed one, and deletes the apps that a failed first deployment
 * brought, so the host is left as it was.
 */
export function hostChanges(
  plan: HostPlan,
  desired: HostTree | undefined,
  deployed: HostTree | undefined,
  mode: "forward" | "rollback",
): HostChanges {
  const want = desired?.apps ?? new Map<string, AppTree>();
  const have = deployed?.apps ?? new Map<string, AppTree>();
  const incoming = new Map(plan.apps.filter((app) => app.change !== "removed").map((app) => [app.app, want.get(app.app)!] as const));
  const outgoing = new Map(plan.apps.filter((app) => app.change !== "added").map((app) => [app.app, have.get(app.app)!] as const));
  const newLinks = [...incoming].flatMap(([app, tree]) => linksOf(app, tree));
  const adding = new Set(newLinks.map((link) => link.path));
  const removing = [...outgoing]
    .flatMap(([app, tree]) => linksOf(app, tree))
    .map((link) => link.path)
    .filter((path) => !adding.has(path));
  return {
    plan,
    incoming,
    switch: {
      stop: plan.units.stop,
      apps: plan.apps.map((app) => ({ app: app.app, release: app.release })),
      purge: mode === "rollback" ? plan.apps.filter((app) => app.change === "removed").map((app) => app.app) : [],
      links: { remove: [...new Set(removing)].sort(), add: newLinks },
      enable: plan.units.enable,
      restart: plan.units.restart,
      reload: plan.apps.some((app) => app.files.some((file) => file.path.startsWith(SYSTEMD_PREFIX))),
    },
    units: plan.units.restart,
    checks: [...incoming].flatMap(([app, tree]) => (tree.manifest?.checks ?? []).map((check) => ({ app, check }))),
  };
}

/** The links an app places on its host, all through `current`, so that the switch moves them all at once. */
function linksOf(app: string, tree: AppTree): Array<{ path: string; target: string }> {
  return appLinks(tree).map(({ path, file }) => ({ path, target: `${appDir(app)}/current/${file}` }));
}
