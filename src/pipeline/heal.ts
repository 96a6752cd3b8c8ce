import { readHostTree } from "../config/config-tree.js";
import type { HostTree } from "../core/config.js";
import type { HostDrift } from "../core/drift.js";
import { isLive } from "../core/outcome.js";
import { planHost, type HostPlan } from "../core/plan.js";
import { readTreePair } from "../git/tree-reader.js";
import type { HostResult } from "../remote/apply-host.js";
import { appDir } from "../remote/commands.js";
import { driftExpectation } from "../remote/drift-host.js";
import type { HistoryEntry } from "../store/store.js";
import type { PreparedPlan } from "./plan-environment.js";
import { planSecrets } from "./plan-secrets.js";

/**
 * The plan that heals drifted hosts: each gets again the tree it runs, the
 * apps that drifted brought as if new, so that their links are placed, their
 * units enabled and restarted, and a release dir that changed is built again
 * from git (apply-host.ts checks it against its snapshot). `recorded` is the
 * environment's plan of the tree its newest entry `head` records; a host
 * that runs another tree than that is not healed: a deployment moves it.
 * `carry` keeps every other host in the heal's record as `head` left it, so
 * that the heal changes nothing of what the next deployment decides from.
 */
export async function healPlan(
  recorded: PreparedPlan,
  drifted: readonly HostDrift[],
  live: ReadonlyMap<string, { tree?: string | null }>,
  head: Pick<HistoryEntry, "hosts">,
): Promise<{ prepared: PreparedPlan; heal: Map<string, string>; carry: Map<string, HostResult> }> {
  const hosts: HostPlan[] = [];
  const heal = new Map<string, string>();
  const trees = new Map(recorded.desired.hosts);
  for (const drift of drifted) {
    const oid = recorded.desired.hosts.get(drift.host)?.oid;
    if (!oid || live.get(drift.host)?.tree !== oid) continue;
    const [dir] = await readTreePair({ reader: recorded.reader, oid, sizes: false }, undefined, `${drift.host}/`);
    const tree = readHostTree(recorded.config, drift.host, dir!, []);
    const apps = driftedApps(tree, drift);
    const full = planHost(drift.host, tree, undefined);
    if (!full || apps.size === 0) continue;
    const units = [...new Set([...apps].flatMap((app) => tree.apps!.get(app)?.manifest?.systemd.units_enabled ?? []))].sort();
    trees.set(drift.host, tree);
    hosts.push({
      ...full,
      from: oid,
      apps: full.apps.filter((app) => apps.has(app.app)),
      units: { enable: units, restart: units, stop: [] },
      takesOver: [],
      hooks: [],
    });
    heal.set(drift.host, drift.findings.map((finding) => `${finding.path} ${finding.kind}`).join(", "));
  }
  const desired = { ...recorded.desired, hosts: trees };
  const envTree = recorded.config.environments[recorded.plan.environment]!.tree;
  // The healed apps' secrets join the redaction set, as in any deployment.
  const secrets = await planSecrets({ environment: recorded.plan.environment, hosts }, desired, envTree, recorded.reader, recorded.open);
  const { returnTo: _, ...rest } = recorded;
  const carry = new Map(
    head.hosts
      .filter((host) => !heal.has(host.host))
      .map(({ host, outcome, skip, detail }): [string, HostResult] => [
        host,
        isLive(outcome) ? { host, outcome: "unchanged" } : { host, outcome, ...(skip ? { skip } : {}), ...(detail ? { detail } : {}) },
      ]),
  );
  return {
    prepared: { ...rest, desired, plan: secrets.plan, secretValues: secrets.values },
    heal,
    carry,
  };
}

/** The apps a host's findings touch: by the path of a file, a link, or a unit. */
function driftedApps(tree: HostTree, drift: HostDrift): Set<string> {
  const apps = new Set<string>();
  const links = driftExpectation(tree).links;
  for (const { kind, path } of drift.findings) {
    if (kind === "link") {
      const target = links.find((link) => link.path === path)?.target ?? "";
      for (const app of tree.apps?.keys() ?? [])
        if (path === `${appDir(app)}/current` || target.startsWith(`${appDir(app)}/`)) apps.add(app);
    } else if (kind === "unit-disabled" || kind === "unit-inactive") {
      for (const [app, appTree] of tree.apps ?? []) if (appTree.manifest?.systemd.units_enabled.includes(path)) apps.add(app);
    } else apps.add(path.split("/")[0]!);
  }
  return new Set([...apps].filter((app) => tree.apps?.has(app)));
}
