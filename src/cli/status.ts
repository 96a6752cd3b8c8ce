import { hostRef, type HistoryEntry, type Store } from "../store/store.js";
import { openStore, type Context } from "./context.js";
import { EXIT } from "./exit-codes.js";

interface HostStatus {
  host: string;
  live: { deployment: string; sourceCommit: string; at: string } | null;
  pending: boolean;
  reason?: string;
}

/** `tidemark status <env> [--json]`: per host, what runs there and whether changes are pending. Reads only the store. */
export async function statusCommand(ctx: Context, environment: string): Promise<number> {
  const store = await openStore(ctx, environment);
  const recent = await store.history(environment, 50);
  // An unpin entry records no deployment: the last attempt is the newest entry that does.
  const head = recent.find((entry) => entry.trigger !== "unpin");
  const pin = recent[0]?.pin;
  const hosts: HostStatus[] = [];
  for (const host of [...(head?.hosts ?? [])].sort((a, b) => a.host.localeCompare(b.host)))
    hosts.push(await hostStatus(store, environment, host.host, head!));
  if (ctx.json) {
    ctx.out(`${JSON.stringify({ environment, pinned: pin ?? null, lastAttempt: head ? summary(head) : null, hosts }, null, 2)}\n`);
    return EXIT.ok;
  }
  if (!head) {
    ctx.out(`${environment}: never deployed\n`);
    return EXIT.ok;
  }
  const lines = [
    `${environment}: last attempt ${head.id}, source ${head.sourceCommit.slice(0, 7)} (${head.sourceRef}, ${head.trigger})${head.returnTo ? `, a return to ${head.returnTo.id}` : ""}`,
    ...(pin ? [`  pinned: ${pin}; pushes are recorded, not deployed, until tidemark unpin ${environment}`] : []),
    ...(head.superseded
      ? [`  superseded: ${head.superseded.map((commit) => commit.slice(0, 7)).join(", ")} (asked for, not deployed on their own)`]
      : []),
  ];
  for (const host of hosts) {
    const live = host.live ? `live ${host.live.deployment} (source ${host.live.sourceCommit.slice(0, 7)})` : "nothing live";
    lines.push(`  ${host.host.padEnd(12)} ${live}  ${host.pending ? `pending: ${host.reason}` : "up to date"}`);
  }
  ctx.out(`${lines.join("\n")}\n`);
  return EXIT.ok;
}

async function hostStatus(store: Store, environment: string, host: string, head: HistoryEntry): Promise<HostStatus> {
  const liveCommit = await store.resolve(hostRef(environment, host));
  const live = liveCommit ? await store.entry(liveCommit) : undefined;
  const wanted = await store.reader.treeAt(head.tree, host);
  const running = live ? await store.reader.treeAt(live.tree, host) : undefined;
  const pending = wanted !== running;
  const attempt = head.hosts.find((candidate) => candidate.host === host);
  return {
    host,
    live: live ? { deployment: live.id, sourceCommit: live.sourceCommit, at: live.at.toISOString() } : null,
    pending,
    ...(pending ? { reason: `${attempt?.outcome ?? "not attempted"} in ${head.id}${attempt?.detail ? `: ${attempt.detail}` : ""}` } : {}),
  };
}

function summary(entry: HistoryEntry) {
  return {
    deployment: entry.id,
    sourceCommit: entry.sourceCommit,
    sourceRef: entry.sourceRef,
    trigger: entry.trigger,
    at: entry.at.toISOString(),
    returnTo: entry.returnTo ?? null,
    superseded: entry.superseded ?? [],
  };
}
