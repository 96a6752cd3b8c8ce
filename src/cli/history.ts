import { openStore, type Context } from "./context.js";
import { EXIT } from "./exit-codes.js";

/** `tidemark history <env> [--json]`: deployments, newest first, with each host's outcome. */
export async function historyCommand(ctx: Context, environment: string, options: { limit: number }): Promise<number> {
  const store = await openStore(ctx, environment);
  const entries = await store.history(environment, options.limit);
  if (ctx.json) {
    ctx.out(`${JSON.stringify(entries.map((entry) => ({ ...entry, at: entry.at.toISOString() })), null, 2)}\n`);
    return EXIT.ok;
  }
  if (entries.length === 0) ctx.out(`${environment}: no deployments yet\n`);
  for (const entry of entries) {
    const hosts = entry.hosts.map((host) => `${host.host} ${host.outcome}`).join(", ");
    ctx.out(`${entry.id}  ${entry.at.toISOString()}  ${entry.sourceCommit.slice(0, 7)} ${entry.sourceRef} (${entry.trigger})  ${hosts}\n`);
  }
  return EXIT.ok;
}
