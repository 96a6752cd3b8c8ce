import { formatProblem } from "../core/problems.js";
import { defaultBranch, resolveUserRef } from "../pipeline/read-source.js";
import { validateSource } from "../pipeline/plan-environment.js";
import { openMirror, secretsOpener, type Context } from "./context.js";
import { EXIT } from "./exit-codes.js";

/** `tidemark validate [--ref REF]`: checks tidemark.yaml and every environment's tree; connects to no host. */
export async function validateCommand(ctx: Context, options: { ref?: string }): Promise<number> {
  const mirror = await openMirror(ctx);
  const source = options.ref ? await resolveUserRef(mirror, options.ref) : await defaultBranch(mirror);
  const problems = await validateSource(mirror, source.commit, secretsOpener(ctx));
  if (ctx.json) ctx.out(`${JSON.stringify({ valid: problems.length === 0, source, problems }, null, 2)}\n`);
  else if (problems.length === 0)
    ctx.out(`valid: tidemark.yaml and every environment's tree at ${source.commit.slice(0, 7)} (${source.ref})\n`);
  else
    ctx.out(
      `invalid: ${problems.length} problem${problems.length === 1 ? "" : "s"} at ${source.commit.slice(0, 7)} (${source.ref}); nothing can be deployed from it\n${problems.map((p) => `  - ${formatProblem(p)}`).join("\n")}\n`,
    );
  return problems.length === 0 ? EXIT.ok : EXIT.invalid;
}
