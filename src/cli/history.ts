import { openStore, type Context } from "./context.js";
import { EXIT } from "./exit-codes.js";

/** `tidemark history <env> [--json]`: deployments, newest first, with each host's outcome. */
export async function historyCommand(ctx: Context, environment: string, options: { limit: number }): Promise<number> {
  const store = await openStore(ctx, environment);
  const entries = await store.history(environment, options.limit);
  if (ctx.json) {
    ctx.out(
      `${JSON.stringify(
        entries.map((entry) => ({ ...entry, at: entry.at.toISOString() })),
        null,
        2,
      )}\n`,
    );
    return EXIT.ok;
  }
  if (entries.length === 0) ctx.out(`${environment}: no deployments yet\n`);
  for (const entry of entries) {
    const when = `${entry.id}  ${entry.at.toISOString()}`;
    if (entry.trigger === "unpin") {
      ctx.out(`${when}  unpinned: follows ${entry.sourceRef} again\n`);
      continue;
    }
    const hosts = entry.hosts.map((host) => `${host.host} ${host.outcome}`).join(", ");
    const notes = [
      entry.returnTo && `return to ${entry.returnTo.id} (${entry.returnTo.sourceCommit.slice(0, 7)})`,
      entry.pin && `pinned`,
      entry.superseded && `superseded ${entry.superseded.map((commit) => commit.slice(0, 7)).join(", ")}`,
    ].filter(Boolean);
    ctx.out(
      `${when}  ${entry.sourceCommit.slice(0, 7)} ${entry.sourceRef} (${entry.trigger})  ${hosts}${notes.length > 0 ? `  [${notes.join("; ")}]` : ""}\n`,
    );
  }
  return EXIT.ok;
}
