import type { AppTree, Hook, HookPhase, HostTree } from "./config.js";
import type { HostPlan } from "./plan.js";

/** A hook as a plan shows it: which app's, at which phase, from which release. */
export interface PlannedHook {
  app: string;
  name: string;
  phase: HookPhase;
  /** On the first host of the rollout only. */
  once?: true;
  irreversible?: true;
}

/** A hook to run on a host, with the release dir it runs from. */
export interface HostHook {
  app: string;
  /** The release (app tree oid) whose dir the hook runs from, and whose hook it is. */
  release: string;
  hook: Hook;
}

/**
 * The hooks one host plan runs, by phase: the activate hooks of every app it
 * brings; when the deployment returns to an earlier tree (a revert,
 * `tidemark rollback`), also the rollback hooks of each app it takes back
 * from, since the outgoing release is the one that knows what it did.
 */
export function hostHooks(
  plan: HostPlan,
  desired: HostTree | undefined,
  deployed: HostTree | undefined,
  returning: boolean,
): Record<HookPhase, HostHook[]> {
  const found: Record<HookPhase, HostHook[]> = { "pre-activate": [], "post-activate": [], "pre-rollback": [], "post-rollback": [] };
  const add = (app: string, release: string | null, tree: AppTree | undefined, phases: HookPhase[]) => {
    if (release === null) return;
    for (const hook of tree?.manifest?.hooks ?? []) if (phases.includes(hook.phase)) found[hook.phase].push({ app, release, hook });
  };
  for (const app of plan.apps) {
    if (returning && app.change !== "added")
      add(app.app, app.previousRelease, deployed?.apps?.get(app.app), ["pre-rollback", "post-rollback"]);
    if (app.change !== "removed") add(app.app, app.release, desired?.apps?.get(app.app), ["pre-activate", "post-activate"]);
  }
  return found;
}

/** The rollback hooks of the releases a host plan brings: what runs when that host switches back from them. */
export function rollbackHooks(
  plan: HostPlan,
  desired: HostTree | undefined,
): Pick<Record<HookPhase, HostHook[]>, "pre-rollback" | "post-rollback"> {
  const found = { "pre-rollback": [] as HostHook[], "post-rollback": [] as HostHook[] };
  for (const app of plan.apps) {
    if (app.release === null) continue;
    for (const hook of desired?.apps?.get(app.app)?.manifest?.hooks ?? [])
      if (hook.phase === "pre-rollback" || hook.phase === "post-rollback")
        found[hook.phase].push({ app: app.app, release: app.release, hook });
  }
  return found;
}

/** The hooks as a plan lists them, in the order they run. */
export function plannedHooks(hooks: Record<HookPhase, HostHook[]>): PlannedHook[] {
  return (["pre-rollback", "pre-activate", "post-activate", "post-rollback"] as const).flatMap((phase) =>
    hooks[phase].map(({ app, hook }) => ({
      app,
      name: hook.name,
      phase,
      ...(hook.on === "once" ? { once: true as const } : {}),
      ...(hook.irreversible ? { irreversible: true as const } : {}),
    })),
  );
}
