import type { AppTree, EnvTree, HostTree } from "./config.js";
import { hostHooks, plannedHooks, type PlannedHook } from "./hooks.js";
import type { FileEntry } from "./tree.js";

export type Change = "added" | "changed" | "removed";

export interface FilePlan {
  path: string;
  change: Change;
  /** In a layered tree, the layer the file comes from (`_all`, `_groups/web`, the host; `a + b` for a merged manifest). */
  layer?: string;
  /** Its template's path in the app (`site.conf.tmpl`) when the file is rendered from one. */
  template?: string;
  /** The file is a secret (an age or SOPS file): its content is never shown, on either side. */
  secret?: true;
}

export interface AppPlan {
  app: string;
  change: Change;
  /** The app's tree oid to deploy (its release dir name); null when the app is removed. */
  release: string | null;
  /** The app's tree oid live now; null when the app is new on the host. */
  previousRelease: string | null;
  files: FilePlan[];
}

export interface HostPlan {
  host: string;
  /** The host's tree oid live now (null: nothing deployed yet). */
  from: string | null;
  /** The host's tree oid to deploy (null: every app leaves the host). */
  to: string | null;
  apps: AppPlan[];
  units: { enable: string[]; restart: string[]; stop: string[] };
  /**
   * Host paths this deployment's manifests link for the first time. Whatever
   * is there now is kept aside on the host and put back when the link goes.
   */
  takesOver: string[];
  /** The hooks this host runs, in the order they run (core/hooks.ts): the activate hooks of what it brings, and on a return the rollback hooks of what it takes back. */
  hooks: PlannedHook[];
  /**
   * Always available, since nothing a link displaces is lost; kept for
   * readers of the `tidemark.plan/v1` JSON, which documents it.
   */
  rollback: { available: true };
}

export interface Plan {
  environment: string;
  hosts: HostPlan[];
}

/**
 * What would change on each host, from git trees alone, never asking a host.
 * Hosts and apps whose tree oid did not change are skipped unread; hosts with
 * no change are not in the plan.
 */
export function planEnvironment(environment: string, desired: EnvTree, deployed: ReadonlyMap<string, HostTree>): Plan {
  const names = [...new Set([...desired.hosts.keys(), ...deployed.keys()])].sort();
  const hosts = names
    .map((host) => planHost(host, desired.hosts.get(host), deployed.get(host)))
    .filter((plan): plan is HostPlan => plan !== undefined);
  return { environment, hosts };
}

export function planHost(host: string, desired: HostTree | undefined, deployed: HostTree | undefined): HostPlan | undefined {
  const to = desired && desired.oid !== "" && (desired.apps === undefined || desired.apps.size > 0) ? desired.oid : null;
  const from = deployed && deployed.oid !== "" ? deployed.oid : null;
  if (to === from) return undefined;
  const wantApps = appsOf(host, "desired", desired);
  const haveApps = appsOf(host, "deployed", deployed);
  const apps: AppPlan[] = [];
  for (const app of [...new Set([...wantApps.keys(), ...haveApps.keys()])].sort()) {
    const plan = planApp(app, wantApps.get(app), haveApps.get(app));
    if (plan) apps.push(plan);
  }
  if (apps.length === 0 && to !== null && from !== null) return undefined;

  const changing = (side: Map<string, AppTree>, change: Change) =>
    apps.filter((app) => app.change === change || app.change === "changed").map((app) => side.get(app.app)!);
  const incoming = changing(wantApps, "added");
  const outgoing = changing(haveApps, "removed");
  const enabledNow = new Set(outgoing.flatMap((tree) => tree.manifest?.systemd.units_enabled ?? []));
  const enabledNext = new Set(incoming.flatMap((tree) => tree.manifest?.systemd.units_enabled ?? []));
  const units = {
    enable: [...enabledNext].filter((unit) => !enabledNow.has(unit)).sort(),
    restart: [...enabledNext].sort(),
    stop: [...enabledNow].filter((unit) => !enabledNext.has(unit)).sort(),
  };
  // Unit links are kept aside on the host too, but /etc/systemd/system rarely holds the unit already: the plan names the paths a manifest chose.
  const symlinks = (trees: AppTree[]) => trees.flatMap((tree) => Object.keys(tree.manifest?.symlinks ?? {}));
  const linked = new Set(symlinks(outgoing));
  const takesOver = [...new Set(symlinks(incoming))].filter((path) => !linked.has(path)).sort();
  const hooks = plannedHooks(
    hostHooks({ host, from, to, apps, units, takesOver, hooks: [], rollback: { available: true } }, desired, deployed, false),
  );
  return { host, from, to, apps, units, takesOver, hooks, rollback: { available: true } };
}

function planApp(app: string, want: AppTree | undefined, have: AppTree | undefined): AppPlan | undefined {
  if (want && have && want.oid === have.oid) return undefined;
  const change: Change = !have ? "added" : !want ? "removed" : "changed";
  const wantFiles: ReadonlyMap<string, FileEntry> = want?.files ?? new Map();
  const haveFiles: ReadonlyMap<string, FileEntry> = have?.files ?? new Map();
  const files: FilePlan[] = [];
  for (const path of [...new Set([...wantFiles.keys(), ...haveFiles.keys()])].sort()) {
    const a = wantFiles.get(path);
    const b = haveFiles.get(path);
    const secret = a?.age || b?.age ? { secret: true as const } : {};
    if (a && !b) files.push({ path, change: "added", ...secret });
    else if (!a && b) files.push({ path, change: "removed", ...secret });
    else if (a && b && (a.oid !== b.oid || a.mode !== b.mode)) files.push({ path, change: "changed", ...secret });
  }
  return { app, change, release: want?.oid ?? null, previousRelease: have?.oid ?? null, files };
}

function appsOf(host: string, side: string, tree: HostTree | undefined): Map<string, AppTree> {
  if (!tree) return new Map();
  if (!tree.apps) throw new Error(`the ${side} tree of ${host} differs but was not read`);
  return tree.apps;
}
