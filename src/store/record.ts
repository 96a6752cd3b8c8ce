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
}

/**
 * The commit message of a deployment in the store: a summary line, then git
 * trailers, one per field and one `Tidemark-Host` per host. Readable with
 * `git log` and `git interpret-trailers`; the format is documented in the README.
 */
export function formatRecord(record: DeploymentRecord): string {
  const counts = new Map<string, number>();
  for (const host of record.hosts) counts.set(host.outcome, (counts.get(host.outcome) ?? 0) + 1);
  const summary = [...counts].map(([outcome, n]) => `${n} ${outcome}`).join(", ") || "no hosts";
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
  return { id, environment, trigger, sourceRepo: one("Source-Repo") ?? "", sourceCommit: one("Source-Commit") ?? "", sourceRef: one("Source-Ref") ?? "", hosts };
}
