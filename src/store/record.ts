import { HOST_OUTCOMES, TRIGGERS, type HostOutcome, type HostOutcomeKind, type Trigger } from "../core/outcome.js";

/** One deployment attempt as the store keeps it. */
export interface DeploymentRecord {
  id: string;
  environment: string;
  sourceRepo: string;
  sourceCommit: string;
  sourceRef: string;
  trigger: Trigger;
  hosts: HostOutcome[];
  /** Set when the deployed tree is one an earlier deployment brought: a return to that state (after a `git revert`, a moved pin, `tidemark rollback`). */
  rollbackTo?: { id: string; sourceCommit: string };
  /** Set while the environment is pinned by `tidemark rollback`: why. Pushes are not deployed until `tidemark unpin`. */
  pin?: string;
  /** Commits asked for before this deployment resolved its ref and not deployed on their own. */
  superseded?: string[];
}

/**
 * The commit message of a deployment in the store: a summary line, then git
 * trailers, one per field and one `Tidemark-Host` per host. Readable with
 * `git log` and `git interpret-trailers`; the format is documented in the README.
 */
export function formatRecord(record: DeploymentRecord): string {
  const counts = new Map<string, number>();
  for (const host of record.hosts) counts.set(host.outcome, (counts.get(host.outcome) ?? 0) + 1);
  const summary = record.trigger === "unpin" ? "unpinned" : [...counts].map(([outcome, n]) => `${n} ${outcome}`).join(", ") || "no hosts";
  const oneLine = (text: string) => text.replace(/[\r\n]+/g, " ").trim();
  return [
    `${record.environment}: ${record.sourceCommit.slice(0, 7)} (${record.trigger}): ${summary}`,
    "",
    `Tidemark-Deployment: ${record.id}`,
    `Tidemark-Environment: ${record.environment}`,
    `Tidemark-Source-Repo: ${oneLine(record.sourceRepo)}`,
    `Tidemark-Source-Commit: ${record.sourceCommit}`,
    `Tidemark-Source-Ref: ${oneLine(record.sourceRef)}`,
    `Tidemark-Trigger: ${record.trigger}`,
    ...(record.rollbackTo ? [`Tidemark-Rollback-To: ${record.rollbackTo.id} ${record.rollbackTo.sourceCommit}`] : []),
    ...(record.pin ? [`Tidemark-Pin: ${oneLine(record.pin)}`] : []),
    ...(record.superseded ?? []).map((commit) => `Tidemark-Superseded: ${commit}`),
    ...record.hosts.map((host) => `Tidemark-Host: ${host.host} ${host.outcome}${host.detail ? ` ${oneLine(host.detail)}` : ""}`),
    "",
  ].join("\n");
}

export function parseRecord(message: string): DeploymentRecord | undefined {
  const trailers = [...message.matchAll(/^Tidemark-([A-Za-z-]+): (.*)$/gm)].map((match) => [match[1] ?? "", match[2] ?? ""] as const);
  const one = (key: string) => trailers.find(([name]) => name === key)?.[1];
  const id = one("Deployment");
  const environment = one("Environment");
  const trigger = one("Trigger") as Trigger | undefined;
  if (!id || !environment || !trigger || !TRIGGERS.includes(trigger)) return undefined;
  const hosts = trailers
    .filter(([name]) => name === "Host")
    .map(([, value]): HostOutcome => {
      const [host = "", outcome = "", ...detail] = value.split(" ");
      return { host, outcome: outcome as HostOutcomeKind, ...(detail.length > 0 ? { detail: detail.join(" ") } : {}) };
    })
    .filter((host) => HOST_OUTCOMES.includes(host.outcome));
  const [rollbackId, rollbackCommit] = one("Rollback-To")?.split(" ") ?? [];
  const pin = one("Pin");
  const superseded = trailers.filter(([name]) => name === "Superseded").map(([, value]) => value);
  return {
    id,
    environment,
    trigger,
    sourceRepo: one("Source-Repo") ?? "",
    sourceCommit: one("Source-Commit") ?? "",
    sourceRef: one("Source-Ref") ?? "",
    hosts,
    ...(rollbackId && rollbackCommit ? { rollbackTo: { id: rollbackId, sourceCommit: rollbackCommit } } : {}),
    ...(pin ? { pin } : {}),
    ...(superseded.length > 0 ? { superseded } : {}),
  };
}
