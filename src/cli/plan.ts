import { planJson, renderPlan } from "../core/render-plan.js";
import { prepareEnvironmentPlan } from "../pipeline/plan-environment.js";
import { resolveEnvironment, resolveUserRef } from "../pipeline/read-source.js";
import { openMirror, openStore, type Context } from "./context.js";
import { EXIT } from "./exit-codes.js";

/** `tidemark plan <env> [--ref REF] [--json]`: what a deployment would change, host by host. */
export async function planCommand(ctx: Context, environment: string, options: { ref?: string }): Promise<number> {
  const mirror = await openMirror(ctx);
  const store = await openStore(ctx, environment);
  const source = options.ref ? await resolveUserRef(mirror, options.ref) : await resolveEnvironment(mirror, environment);
  const { plan, returnTo, pin } = await prepareEnvironmentPlan(mirror, store, environment, source);
  const notes = [returnTo && `, a return to ${returnTo.id}`, pin && `; ${environment} is pinned (${pin})`].filter(Boolean).join("");
  ctx.out(
    ctx.json
      ? `${JSON.stringify(planJson(plan, source), null, 2)}\n`
      : `source ${source.commit.slice(0, 7)} (${source.ref})${notes}\n${renderPlan(plan)}`,
  );
  return EXIT.ok;
}
