import {
  HOST_OUTCOMES,
  SKIP_REASONS,
  TRIGGERS,
  type HookRecord,
  type HostOutcomeKind,
  type HostRecord,
  type SkipReason,
  type TimelineStep,
  type Trigger,
} from "../core/outcome.js";

/** One deployment attempt as the store keeps it. */
export interface DeploymentRecord {
  id: string;
  environment: string;
  sourceRepo: string;
  sourceCommit: string;
  sourceRef: string;
  trigger: Trigger;
  /** When the rollout began; the hosts' timelines count from here. */
  startedAt?: Date;
  hosts: HostRecord[];
  /** Set when the deployed tree is one an earlier deployment brought: a return to that state (after a `git revert`, a moved pin, `tidemark rollback`). */
  returnTo?: { id: string; sourceCommit: string };
  /** Set while the environment is pinned by `tidemark rollback`: why. Pushes are not deployed until `tidemark unpin`. */
  pin?: string;
  /** Commits asked for before this deployment resolved its ref and not deployed on their own. */
  superseded?: string[];
}

/**
 * The commit message of a deployment in the store: a summary line, the
 * output of each failing host (indented), then git trailers: one per field,
 * and per host its outcome, why it was skipped, its timeline and bytes uploaded. Readable with
 * `git log` and `git interpret-trailers`; the format is documented in docs/store.md.
 */
export function formatRecord(record: DeploymentRecord): string {
  const counts = new Map<string, number>();
  for (const host of record.hosts) counts.set(host.outcome, (counts.get(host.outcome) ?? 0) + 1);
  const summary = record.trigger === "unpin" ? "unpinned" : [...counts].map(([outcome, n]) => `${n} ${outcome}`).join(", ") || "no hosts";
  const oneLine = (text: string) => text.replace(/[\r\n]+/g, " ").trim();
  const lines = [
    `${record.environment}: ${record.sourceCommit.slice(0, 7)} (${record.trigger}): ${summary}`,
    "",
    `Tidemark-Deployment: ${record.id}`,
    `Tidemark-Environment: ${record.environment}`,
    `Tidemark-Source-Repo: ${oneLine(record.sourceRepo)}`,
    `Tidemark-Source-Commit: ${record.sourceCommit}`,
    `Tidemark-Source-Ref: ${oneLine(record.sourceRef)}`,
    `Tidemark-Trigger: ${record.trigger}`,
    ...(record.returnTo ? [`Tidemark-Return-To: ${record.returnTo.id} ${record.returnTo.sourceCommit}`] : []),
    ...(record.pin ? [`Tidemark-Pin: ${oneLine(record.pin)}`] : []),
    ...(record.superseded ?? []).map((commit) => `Tidemark-Superseded: ${commit}`),
    ...(record.startedAt ? [`Tidemark-Started: ${record.startedAt.toISOString()}`] : []),
    ...record.hosts.map((host) => `Tidemark-Host: ${host.host} ${host.outcome}${host.detail ? ` ${oneLine(host.detail)}` : ""}`),
    ...record.hosts.flatMap((host) => (host.skip ? [`Tidemark-Skip: ${host.host} ${host.skip}`] : [])),
    ...record.hosts.flatMap((host) =>
      host.timeline?.length ? [`Tidemark-Timeline: ${host.host} ${host.timeline.map((step) => `${step.phase}@${step.at}`).join(" ")}`] : [],
    ),
    ...record.hosts.flatMap((host) => (host.uploadedBytes !== undefined ? [`Tidemark-Uploaded: ${host.host} ${host.uploadedBytes}`] : [])),
    // App names may hold spaces: the hook's app and name go last, encoded.
    ...record.hosts.flatMap((host) =>
      (host.hooks ?? []).map(
        (hook) =>
          `Tidemark-Hook: ${host.host} ${hook.phase} ${hook.exit} ${hook.ms} ${encodeURIComponent(hook.app)}/${encodeURIComponent(hook.name)}`,
      ),
    ),
    "",
  ];
  // Output comes from the hosts: indented, so that no line of it can pass for a trailer; its tail is what matters.
  const outputs = record.hosts.flatMap((host) => [
    ...(host.log ? [`Output of ${host.host}:`, ...tail(host.log).map((line) => `${OUTPUT_INDENT}${line}`), ""] : []),
    ...(host.hooks ?? []).flatMap((hook, i) =>
      hook.log ? [`Output of ${host.host} hook ${i + 1}:`, ...tail(hook.log, HOOK_LINES).map((line) => `${OUTPUT_INDENT}${line}`), ""] : [],
    ),
  ]);
  return [...lines.slice(0, 2), ...outputs, ...lines.slice(2)].join("\n");
}

const OUTPUT_INDENT = "    ";
const OUTPUT_LIMIT = { lines: 60, chars: 8000 };

/** A hook's output kept in the record: its last lines, as a failure's. */
const HOOK_LINES = 20;

function tail(log: string, lines = OUTPUT_LIMIT.lines): string[] {
  const text = log.length > OUTPUT_LIMIT.chars ? log.slice(-OUTPUT_LIMIT.chars) : log;
  return text.replace(/\r/g, "").trimEnd().split("\n").slice(-lines);
}

export function parseRecord(message: string): DeploymentRecord | undefined {
  const trailers = [...message.matchAll(/^Tidemark-([A-Za-z-]+): (.*)$/gm)].map((match) => [match[1] ?? "", match[2] ?? ""] as const);
  const one = (key: string) => trailers.find(([name]) => name === key)?.[1];
  const id = one("Deployment");
  const environment = one("Environment");
  const trigger = one("Trigger") as Trigger | undefined;
  if (!id || !environment || !trigger || !TRIGGERS.includes(trigger)) return undefined;
  const perHost = (key: string) =>
    new Map(
      trailers
        .filter(([name]) => name === key)
        .map(([, value]) => [value.slice(0, value.indexOf(" ")), value.slice(value.indexOf(" ") + 1)]),
    );
  const timelines = perHost("Timeline");
  const uploaded = perHost("Uploaded");
  const skips = perHost("Skip");
  const hookOutputs = new Map(
    [...message.matchAll(/^Output of (\S+) hook (\d+):\n((?: {4}.*(?:\n|$))+)/gm)].map((match) => [
      `${match[1] ?? ""} ${match[2] ?? ""}`,
      (match[3] ?? "").replace(/^ {4}/gm, "").trimEnd(),
    ]),
  );
  const hooks = new Map<string, HookRecord[]>();
  for (const [, value] of trailers.filter(([name]) => name === "Hook")) {
    const [host = "", phase = "", exit = "", ms = "", named = ""] = value.split(" ");
    const [app = "", name = ""] = named.split("/").map(decodeURIComponent);
    const list = hooks.get(host) ?? [];
    list.push({ phase, app, name, exit: Number(exit), ms: Number(ms), log: hookOutputs.get(`${host} ${list.length + 1}`) ?? "" });
    hooks.set(host, list);
  }
  const outputs = new Map(
    [...message.matchAll(/^Output of (\S+):\n((?: {4}.*(?:\n|$))+)/gm)].map((match) => [
      match[1] ?? "",
      (match[2] ?? "").replace(/^ {4}/gm, "").trimEnd(),
    ]),
  );
  const hosts = trailers
    .filter(([name]) => name === "Host")
    .map(([, value]): HostRecord => {
      const [host = "", outcome = "", ...detail] = value.split(" ");
      const timeline = timelines
        .get(host)
        ?.split(" ")
        .map((step): TimelineStep => ({ phase: step.slice(0, step.lastIndexOf("@")), at: Number(step.slice(step.lastIndexOf("@") + 1)) }));
      const bytes = uploaded.get(host);
      const log = outputs.get(host);
      const skip = outcome === "skipped" ? skipReason(skips.get(host), detail.join(" ")) : undefined;
      return {
        host,
        outcome: outcome as HostOutcomeKind,
        ...(detail.length > 0 ? { detail: detail.join(" ") } : {}),
        ...(skip ? { skip } : {}),
        ...(timeline ? { timeline } : {}),
        ...(bytes !== undefined ? { uploadedBytes: Number(bytes) } : {}),
        ...(log ? { log } : {}),
        ...(hooks.has(host) ? { hooks: hooks.get(host)! } : {}),
      };
    })
    .filter((host) => HOST_OUTCOMES.includes(host.outcome));
  const started = one("Started");
  // Records before the word was "return" say Rollback-To.
  const [returnId, returnCommit] = (one("Return-To") ?? one("Rollback-To"))?.split(" ") ?? [];
  const pin = one("Pin");
  const superseded = trailers.filter(([name]) => name === "Superseded").map(([, value]) => value);
  return {
    id,
    environment,
    trigger,
    ...(started ? { startedAt: new Date(started) } : {}),
    sourceRepo: one("Source-Repo") ?? "",
    sourceCommit: one("Source-Commit") ?? "",
    sourceRef: one("Source-Ref") ?? "",
    hosts,
    ...(returnId && returnCommit ? { returnTo: { id: returnId, sourceCommit: returnCommit } } : {}),
    ...(pin ? { pin } : {}),
    ...(superseded.length > 0 ? { superseded } : {}),
  };
}

/**
 * Why a skipped host was skipped: its Tidemark-Skip trailer, or, in a record
 * written before that trailer, the start or end of its detail as Tidemark
 * worded it then (frozen here: later wording never changes old records).
 */
function skipReason(trailer: string | undefined, detail: string): SkipReason {
  if (SKIP_REASONS.includes(trailer as SkipReason)) return trailer as SkipReason;
  if (detail.startsWith("held back: ")) return "held-back";
  if (detail.endsWith("the operator stopped before this host (shutdown); the next run deploys it")) return "stopped";
  return "halted";
}
