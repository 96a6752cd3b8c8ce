import { TidemarkError } from "../core/errors.js";
import { planJson, renderPlan } from "../core/render-plan.js";
import { flattenFiles } from "../core/tree.js";
import { readTreePair } from "../git/tree-reader.js";
import { prepareEnvironmentPlan, type PreparedPlan } from "../pipeline/plan-environment.js";
import { resolveEnvironment, resolveUserRef } from "../pipeline/read-source.js";
import { openMirror, openStore, secretsOpener, type Context } from "./context.js";
import { EXIT } from "./exit-codes.js";

/** `tidemark plan <env> [--ref REF] [--explain HOST] [--json]`: what a deployment would change, host by host; or every file of one host, with its layer. */
export async function planCommand(ctx: Context, environment: string, options: { ref?: string; explain?: string }): Promise<number> {
  const mirror = await openMirror(ctx);
  const store = await openStore(ctx, environment);
  const source = options.ref ? await resolveUserRef(mirror, options.ref) : await resolveEnvironment(mirror, environment);
  const prepared = await prepareEnvironmentPlan(mirror, store, environment, source, { open: secretsOpener(ctx) });
  if (options.explain !== undefined) return explain(ctx, prepared, options.explain);
  const { plan, returnTo, pin } = prepared;
  const notes = [returnTo && `, a return to ${returnTo.id}`, pin && `; ${environment} is pinned (${pin})`].filter(Boolean).join("");
  ctx.out(
    ctx.json
      ? `${JSON.stringify(planJson(plan, source), null, 2)}\n`
      : `source ${source.commit.slice(0, 7)} (${source.ref})${notes}\n${renderPlan(plan)}`,
  );
  return EXIT.ok;
}

interface ExplainedFile {
  app: string;
  path: string;
  layer: string;
  template?: string;
  mode: string;
  size: number;
  oid: string;
}

/** Every file of a host's apps as the source commit gives it, layers applied, with the layer it came from. */
async function explain(ctx: Context, prepared: PreparedPlan, host: string): Promise<number> {
  const { plan, source } = prepared;
  const tree = prepared.desired.hosts.get(host);
  if (!tree)
    throw new TidemarkError(
      "HOST_NOT_IN_ENV",
      `${host} is not a host of ${plan.environment} at ${source.commit.slice(0, 7)}`,
      `its hosts: ${[...prepared.desired.hosts.keys()].join(", ") || "none"}`,
    );
  const [dir] = tree.oid ? await readTreePair({ reader: prepared.reader, oid: tree.oid, sizes: true }, undefined, `${host}/`) : [];
  const origins = prepared.origins.get(host);
  const files: ExplainedFile[] = [];
  for (const [app, entry] of [...(dir?.entries ?? [])].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (entry.kind !== "dir") continue;
    for (const [path, file] of [...flattenFiles(entry)].sort(([a], [b]) => (a < b ? -1 : 1)))
      if (file.kind === "file")
        files.push({ app, path, layer: host, ...origins?.get(`${app}/${path}`), mode: file.mode, size: file.size ?? 0, oid: file.oid });
  }
  if (ctx.json) {
    ctx.out(
      `${JSON.stringify({ schema: "tidemark.explain/v1", environment: plan.environment, host, source, tree: tree.oid || null, files }, null, 2)}\n`,
    );
    return EXIT.ok;
  }
  const apps = new Set(files.map((file) => file.app)).size;
  const width = Math.max(0, ...files.map((file) => file.app.length + 1 + file.path.length));
  const lines = [
    `${host} in ${plan.environment} at ${source.commit.slice(0, 7)} (${source.ref}): ${files.length} file${files.length === 1 ? "" : "s"} in ${apps} app${apps === 1 ? "" : "s"}`,
    ...files.map(
      (file) => `  ${`${file.app}/${file.path}`.padEnd(width)}  ← ${file.layer}${file.template ? `, rendered from ${file.template}` : ""}`,
    ),
  ];
  ctx.out(`${lines.join("\n")}\n`);
  return EXIT.ok;
}
