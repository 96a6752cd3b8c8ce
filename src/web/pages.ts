import { deploymentOutcome, isLive, type HookRecord, type HostOutcomeKind, type HostRecord, type TimelineStep } from "../core/outcome.js";
import { originNote } from "../core/layers.js";
import type { Change, HostPlan, Plan } from "../core/plan.js";
import type { Problem } from "../core/problems.js";
import type { HostDrift } from "../core/drift.js";
import type { DriftCheck, RunningDeployment } from "../queue/queues.js";
import type { HistoryEntry } from "../store/store.js";
import { href, html, Html } from "./html.js";

/** What the page knows of one environment: its rule, its pin, and each host. */
export interface EnvironmentView {
  name: string;
  /** "branch main", "tag production", "tags v*": absent when tidemark.yaml no longer names it. */
  track?: string;
  tree?: string;
  pin?: string;
  last?: HistoryEntry;
  hosts: HostView[];
  /** Where the environment points now, and what deploying it would change; or why that is unknown. */
  pending: { ref: string; commit: string; plan: Plan } | { problem: string; problems?: Problem[] };
  /** The operator's last drift check of the environment. */
  drift?: DriftCheck;
}

export interface HostView {
  host: string;
  /** The deployment live on the host, per the store. */
  live?: { id: string; sourceCommit: string };
  /** The host's outcome in the last attempt. */
  lastOutcome?: HostRecord;
  pending?: HostPlan;
}

export interface OverviewView {
  repo: string;
  /** Set when tidemark.yaml on the default branch cannot be read: the page shows the store alone. */
  configProblem?: string;
  environments: EnvironmentView[];
  running: RunningDeployment[];
  recent: HistoryEntry[];
}

export interface DeploymentView {
  entry: HistoryEntry;
  /** What the deployment changed (or tried to) on each host it touched. */
  plan: HostPlan[];
}

const STYLE = `
:root{color-scheme:light dark;--fg:#1d2228;--muted:#5f6b76;--line:#d8dee4;--bg:#fff;--panel:#f6f8fa;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--run:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#8d96a0;--line:#30363d;--bg:#0d1117;--panel:#161b22;--ok:#3fb950;--bad:#f85149;--warn:#d29922;--run:#58a6ff}}
*{box-sizing:border-box}body{margin:0;font:14px/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;gap:1.5rem;align-items:baseline;padding:.75rem 1.5rem;border-bottom:1px solid var(--line);background:var(--panel)}
header a{color:var(--fg);text-decoration:none;font-weight:600}header .repo{color:var(--muted);font-size:12px;overflow-wrap:anywhere}
main{max-width:1100px;margin:0 auto;padding:1rem 1.5rem 3rem}h1{font-size:20px}h2{font-size:16px;margin-top:2rem}h3{font-size:14px;margin:1.25rem 0 .25rem}
a{color:var(--run)}table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px}code,pre,.sha{font-family:ui-monospace,monospace;font-size:12.5px}
pre{background:var(--panel);border:1px solid var(--line);padding:.6rem .8rem;overflow:auto;max-height:24rem;white-space:pre-wrap;overflow-wrap:anywhere}
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:12px;font-weight:600;border:1px solid currentColor}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.run{color:var(--run)}.muted{color:var(--muted)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:.5rem 0}dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
.note{border-left:3px solid var(--warn);padding:.4rem .8rem;background:var(--panel);margin:.75rem 0}
.bar{display:flex;height:.9rem;border-radius:3px;overflow:hidden;margin:.25rem 0 .5rem;background:var(--panel)}.bar span{display:block;min-width:2px}
.p-connect,.p-lock,.p-inspect{background:#8c959f}.p-upload{background:#0969da}.p-switch{background:#8250df}.p-restart{background:#bf8700}.p-check{background:#1a7f37}.p-rollback{background:#cf222e}.p-commit{background:#57606a}
ul.files{list-style:none;padding-left:1rem;margin:.1rem 0}ul.files li{font-family:ui-monospace,monospace;font-size:12.5px;overflow-wrap:anywhere}
`;

const SIGN: Record<Change, string> = { added: "+", changed: "~", removed: "-" };

function layout(title: string, repo: string, body: Html, refreshSeconds?: number): Html {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
${refreshSeconds ? html`<meta http-equiv="refresh" content="${refreshSeconds}">` : ""}<title>${title} · Tidemark</title><style>${new Html(STYLE)}</style></head>
<body><header><a href="/">Tidemark</a><span class="repo">${repo}</span></header><main>
${body}
</main></body></html>
`;
}

export function overviewPage(view: OverviewView): Html {
  return layout(
    "Environments",
    view.repo,
    html`<h1>Environments</h1>
${view.configProblem ? html`<p class="note">tidemark.yaml on the default branch cannot be read: ${view.configProblem}. The page shows what the store holds.</p>` : ""}
${view.running.length > 0 ? html`<h2>Under way</h2>${runningTable(view.running)}` : ""}
${view.environments.length === 0 ? html`<p class="muted">No environment yet: push a tidemark.yaml, or run tidemark deploy.</p>` : view.environments.map((env) => environmentSection(env, true))}
<h2>Recent deployments</h2>
${historyTable(view.recent, true)}`,
  );
}

export function environmentPage(env: EnvironmentView, repo: string, history: HistoryEntry[]): Html {
  return layout(env.name, repo, html`${environmentSection(env, false)}<h2>History</h2>${historyTable(history, false)}`);
}

function environmentSection(env: EnvironmentView, linkName: boolean): Html {
  const name = linkName ? html`<a href="${href("environments", env.name)}">${env.name}</a>` : env.name;
  const pending = "plan" in env.pending ? env.pending : undefined;
  return html`<section><h2>${name}</h2>
<dl><dt>Tracks</dt><dd>${env.track ?? html`<span class="muted">not in tidemark.yaml any more</span>`}${env.tree ? html` · tree <code>${env.tree}</code>` : ""}</dd>
${env.pin ? html`<dt>Pinned</dt><dd class="warn">${env.pin}: pushes wait for <code>tidemark unpin ${env.name}</code></dd>` : ""}
<dt>Points at</dt><dd>${pending ? html`<span class="sha">${short(pending.commit)}</span> (${pending.ref})` : html`<span class="muted">${"problem" in env.pending ? env.pending.problem : ""}</span>`}</dd>
<dt>Last attempt</dt><dd>${env.last ? html`<a href="${href("deployments", env.last.id)}">${env.last.id}</a> ${outcomeBadge(env.last)}` : html`<span class="muted">never deployed</span>`}</dd>
${env.drift ? html`<dt>Drift</dt><dd>${driftSummary(env.drift)}</dd>` : ""}</dl>
${"problems" in env.pending && env.pending.problems ? problemList(env.pending.problems) : ""}
<table><thead><tr><th>Host</th><th>Runs</th><th>Last attempt</th><th>Pending</th>${env.drift ? html`<th>Drift</th>` : ""}</tr></thead><tbody>
${env.hosts.map(
  (host) => html`<tr><td>${host.host}</td>
<td>${host.live ? html`<span class="sha">${short(host.live.sourceCommit)}</span> <a class="muted" href="${href("deployments", host.live.id)}">${host.live.id}</a>` : html`<span class="muted">nothing</span>`}</td>
<td>${host.lastOutcome ? html`${hostBadge(host.lastOutcome.outcome)} <span class="muted">${host.lastOutcome.detail ?? ""}</span>` : ""}</td>
<td>${host.pending ? pendingSummary(host.pending) : pending ? html`<span class="muted">up to date</span>` : ""}</td>${env.drift ? html`<td>${hostDrift(env.drift.hosts.find((checked) => checked.host === host.host))}</td>` : ""}</tr>`,
)}
</tbody></table></section>`;
}

function driftSummary(check: DriftCheck): Html {
  const drifted = check.hosts.filter((host) => host.state === "drift" && !host.healed).length;
  const healed = check.hosts.filter((host) => host.healed).length;
  const verdict =
    drifted > 0
      ? html`<span class="bad">drift on ${drifted} of ${check.hosts.length} hosts</span>`
      : html`<span class="ok">no drift</span>${healed > 0 ? ` (${healed} healed)` : ""}`;
  return html`${verdict} <span class="muted">checked ${when(new Date(check.checkedAt))} against <span class="sha">${short(check.sourceCommit)}</span></span>`;
}

/** A host's last drift check: its state, each finding's kind and path (never a file's content), and the heal that followed. */
function hostDrift(drift: HostDrift | undefined): Html {
  if (!drift) return html`<span class="muted">not checked</span>`;
  if (drift.state !== "drift")
    return html`<span class="${drift.state === "clean" ? "ok" : "warn"}">${drift.state}</span>${drift.detail ? html` <span class="muted">${drift.detail}</span>` : ""}`;
  const state = drift.fighting
    ? html`<span class="badge bad">fighting</span>`
    : drift.healed
      ? html`<span class="badge ok">healed</span> <a class="muted" href="${href("deployments", drift.healed)}">${drift.healed}</a>`
      : html`<span class="badge bad">drift</span>`;
  return html`<details><summary>${state} ${drift.findings.length} finding${drift.findings.length === 1 ? "" : "s"}</summary><ul>${drift.findings.map((finding) => html`<li>${finding.kind} <code>${finding.path}</code></li>`)}</ul></details>`;
}

function pendingSummary(plan: HostPlan): Html {
  const files = plan.apps.reduce((sum, app) => sum + app.files.length, 0);
  return html`<details><summary>${plan.apps.length} app${plan.apps.length === 1 ? "" : "s"}, ${files} file${files === 1 ? "" : "s"}</summary>${planBody(plan)}</details>`;
}

function runningTable(running: RunningDeployment[]): Html {
  return html`<table><thead><tr><th>Deployment</th><th>Environment</th><th>Commit</th><th>Started</th><th>Hosts</th></tr></thead><tbody>
${running.map((d) => html`<tr><td><a href="${href("deployments", d.id)}">${d.id}</a></td><td>${d.environment}</td><td class="sha">${short(d.sourceCommit)}</td><td>${when(new Date(d.startedAt))}</td><td>${d.hosts.length}</td></tr>`)}
</tbody></table>`;
}

function historyTable(entries: HistoryEntry[], withEnvironment: boolean): Html {
  if (entries.length === 0) return html`<p class="muted">Nothing recorded yet.</p>`;
  return html`<table><thead><tr><th>When</th><th>Deployment</th>${withEnvironment ? html`<th>Environment</th>` : ""}<th>Commit</th><th>Trigger</th><th>Outcome</th><th>Hosts</th></tr></thead><tbody>
${entries.map(
  (
    entry,
  ) => html`<tr><td>${when(entry.at)}</td><td><a href="${href("deployments", entry.id)}">${entry.id}</a></td>${withEnvironment ? html`<td><a href="${href("environments", entry.environment)}">${entry.environment}</a></td>` : ""}
<td><span class="sha">${short(entry.sourceCommit)}</span> <span class="muted">${shortRef(entry.sourceRef)}</span></td><td>${entry.trigger}</td>
<td>${outcomeBadge(entry)}${entry.returnTo ? html` <span class="badge warn">return to ${short(entry.returnTo.sourceCommit)}</span>` : ""}${entry.pin ? html` <span class="badge warn">pinned</span>` : ""}</td>
<td>${hostCounts(entry.hosts)}</td></tr>`,
)}
</tbody></table>`;
}

export function deploymentPage(view: DeploymentView, repo: string): Html {
  const { entry } = view;
  const end = Math.max(0, ...entry.hosts.map((host) => host.timeline?.at(-1)?.at ?? 0));
  return layout(
    `Deployment ${entry.id}`,
    repo,
    html`<h1>Deployment ${entry.id} ${outcomeBadge(entry)}</h1>
<dl><dt>Environment</dt><dd><a href="${href("environments", entry.environment)}">${entry.environment}</a></dd>
<dt>Source</dt><dd><span class="sha">${entry.sourceCommit}</span> (${entry.sourceRef})</dd>
<dt>Trigger</dt><dd>${entry.trigger}</dd>
<dt>Started</dt><dd>${when(entry.startedAt ?? entry.at)}${end > 0 ? html` · took ${seconds(end)}` : ""}</dd>
${entry.returnTo ? html`<dt>Return</dt><dd class="warn">to the tree of <a href="${href("deployments", entry.returnTo.id)}">${entry.returnTo.id}</a> (<span class="sha">${short(entry.returnTo.sourceCommit)}</span>)</dd>` : ""}
${entry.pin ? html`<dt>Pinned</dt><dd class="warn">${entry.pin}</dd>` : ""}
${entry.superseded ? html`<dt>Superseded</dt><dd>${entry.superseded.map((commit) => html`<span class="sha">${short(commit)}</span> `)}<span class="muted">(asked for, deployed by this one)</span></dd>` : ""}
<dt>Hosts</dt><dd>${hostCounts(entry.hosts)}</dd></dl>
${entry.hosts
  .filter((host) => host.outcome !== "unchanged")
  .map((host) =>
    hostSection(
      host,
      view.plan.find((plan) => plan.host === host.host),
    ),
  )}
${
  entry.hosts.some((host) => host.outcome === "unchanged")
    ? html`<p class="muted">Unchanged, not contacted: ${entry.hosts
        .filter((host) => host.outcome === "unchanged")
        .map((host) => host.host)
        .join(", ")}</p>`
    : ""
}`,
  );
}

function hostSection(host: HostRecord, plan: HostPlan | undefined): Html {
  return html`<section class="host" id="${`host-${host.host}`}"><h2>${host.host} ${hostBadge(host.outcome)}</h2>
${host.detail ? html`<p class="${isLive(host.outcome) ? "" : "bad"}">${host.detail}</p>` : ""}
${host.uploadedBytes !== undefined ? html`<p class="muted">${host.uploadedBytes === 0 ? "nothing uploaded: every release was on the host already" : `${bytes(host.uploadedBytes)} uploaded`}</p>` : ""}
${plan ? html`<h3>Plan</h3>${planBody(plan)}` : ""}
${host.timeline ? html`<h3>Timeline</h3>${timeline(host.timeline)}` : ""}
${host.hooks?.length ? html`<h3>Hooks</h3>${hookTable(host.hooks)}` : ""}
${host.log ? html`<h3>Output</h3><pre class="output">${host.log}</pre>` : ""}</section>`;
}

/** Each app hook that ran, in order: its phase, how it ended, how long it took, and the last lines it printed. */
function hookTable(hooks: HookRecord[]): Html {
  return html`<table class="timeline"><thead><tr><th>Hook</th><th>Phase</th><th>Exit</th><th>Took</th></tr></thead><tbody>
${hooks.map((hook) => html`<tr class="${hook.exit === 0 ? "" : "bad"}"><td>${hook.app}/${hook.name}</td><td>${hook.phase}</td><td>${hook.exit}</td><td>${hook.ms} ms</td></tr>${hook.log ? html`<tr><td colspan="4"><pre class="output">${hook.log}</pre></td></tr>` : ""}`)}
</tbody></table>`;
}

/** Each step with when it began and how long it took; the steps after `rollback` undo the switch. */
export function timeline(steps: TimelineStep[]): Html {
  const first = steps[0]?.at ?? 0;
  const total = Math.max(1, (steps.at(-1)?.at ?? 0) - first);
  let rollingBack = false;
  const rows = steps.slice(0, -1).map((step, i) => {
    rollingBack ||= step.phase === "rollback";
    const took = (steps[i + 1]?.at ?? step.at) - step.at;
    return { ...step, took, rollingBack };
  });
  return html`<div class="bar">${rows.map((row) => html`<span class="${`p-${row.rollingBack ? "rollback" : row.phase}`}" style="${`width:${((row.took / total) * 100).toFixed(2)}%`}" title="${`${row.phase} ${row.took} ms`}"></span>`)}</div>
<table class="timeline"><thead><tr><th>Step</th><th>At</th><th>Took</th></tr></thead><tbody>
${rows.map((row) => html`<tr class="${row.rollingBack ? "bad" : ""}"><td>${row.rollingBack && row.phase !== "rollback" ? `${row.phase} (rollback)` : row.phase}</td><td>+${seconds(row.at)}</td><td>${row.took} ms</td></tr>`)}
</tbody></table>`;
}

/** A deployment under way: what it deploys and each host's steps so far; the page reloads itself until the store records it. */
export function runningPage(running: RunningDeployment, repo: string): Html {
  const last = new Map(running.steps.map((step) => [step.host, step]));
  return layout(
    `Deployment ${running.id}`,
    repo,
    html`<h1>Deployment ${running.id} <span class="badge run">deploying</span></h1>
<dl><dt>Environment</dt><dd><a href="${href("environments", running.environment)}">${running.environment}</a></dd>
<dt>Source</dt><dd><span class="sha">${running.sourceCommit}</span> (${running.sourceRef})</dd>
<dt>Started</dt><dd>${when(new Date(running.startedAt))}</dd></dl>
<table><thead><tr><th>Host</th><th>Step</th></tr></thead><tbody>
${running.hosts.map((host) => html`<tr><td>${host}</td><td>${last.get(host)?.phase ?? html`<span class="muted">waiting</span>`}</td></tr>`)}
</tbody></table><p class="muted">This page reloads every 2 s until the deployment is recorded.</p>`,
    2,
  );
}

export function planPage(
  environment: string,
  source: { ref: string; commit: string },
  plan: Plan | undefined,
  problems: Problem[],
  repo: string,
): Html {
  return layout(
    `Plan for ${environment}`,
    repo,
    html`<h1>Plan: <a href="${href("environments", environment)}">${environment}</a> at <span class="sha">${short(source.commit)}</span></h1>
<p class="muted">What deploying ${source.commit} would change, against what the store says runs now. Nothing was contacted to make it.</p>
${problems.length > 0 ? html`<p class="bad">The config tree at this commit is invalid; nothing would deploy:</p>${problemList(problems)}` : ""}
${plan && plan.hosts.length === 0 ? html`<p class="ok">Nothing to do: every host is up to date.</p>` : ""}
${(plan?.hosts ?? []).map((host) => html`<section><h2>${host.host}</h2>${planBody(host)}</section>`)}`,
  );
}

export function notFoundPage(what: string, repo: string): Html {
  return layout("Not found", repo, html`<h1>Not found</h1><p>${what}</p><p><a href="/">All environments</a></p>`);
}

function planBody(plan: HostPlan): Html {
  return html`<ul class="files">${plan.apps.map(
    (app) =>
      html`<li><strong>${SIGN[app.change]} ${app.app}</strong><ul class="files">${app.files.map((file) => html`<li class="${file.change === "removed" ? "bad" : file.change === "added" ? "ok" : ""}">${SIGN[file.change]} ${file.path}${file.secret ? html` <span class="muted">secret ${file.change}</span>` : ""}${originNote(plan.host, file) ? html` <span class="muted">${originNote(plan.host, file)}</span>` : ""}</li>`)}</ul></li>`,
  )}</ul>
${plan.units.restart.length > 0 ? html`<p>restart <code>${plan.units.restart.join(" ")}</code></p>` : ""}${plan.units.enable.length > 0 ? html`<p>enable <code>${plan.units.enable.join(" ")}</code></p>` : ""}${plan.units.stop.length > 0 ? html`<p>stop <code>${plan.units.stop.join(" ")}</code></p>` : ""}
${plan.takesOver.length > 0 ? html`<p>takes over <code>${plan.takesOver.join(" ")}</code> (what is there now is kept on the host, and put back when the link goes)</p>` : ""}
<p class="muted">rollback available</p>`;
}

function problemList(problems: Problem[]): Html {
  return html`<ul>${problems.map((problem) => html`<li><code>${problem.file}</code>${problem.field ? html` <code>${problem.field}</code>` : ""}: ${problem.message}</li>`)}</ul>`;
}

const OUTCOME_CLASS: Record<HostOutcomeKind, string> = {
  unchanged: "muted",
  deployed: "ok",
  "rolled-back": "bad",
  "rollback-failed": "bad",
  failed: "bad",
  unreachable: "warn",
  skipped: "warn",
};

function hostBadge(outcome: HostOutcomeKind): Html {
  return html`<span class="${`badge ${OUTCOME_CLASS[outcome]}`}">${outcome}</span>`;
}

function outcomeBadge(entry: HistoryEntry): Html {
  if (entry.trigger === "unpin") return html`<span class="badge muted">unpinned</span>`;
  const outcome = deploymentOutcome(entry.hosts);
  return html`<span class="${`badge ${outcome === "succeeded" ? "ok" : outcome === "failed" ? "bad" : "warn"}`}">${outcome}</span>`;
}

function hostCounts(hosts: HostRecord[]): string {
  const counts = new Map<string, number>();
  for (const host of hosts) counts.set(host.outcome, (counts.get(host.outcome) ?? 0) + 1);
  return [...counts].map(([outcome, n]) => `${n} ${outcome}`).join(", ") || "no hosts";
}

const short = (sha: string) => sha.slice(0, 7);
const shortRef = (ref: string) => ref.replace(/^refs\/(heads|tags)\//, "");
const when = (date: Date) => `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
const bytes = (n: number) =>
  n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`;
