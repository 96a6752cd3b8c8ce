import type { IncomingMessage, ServerResponse } from "node:http";
import { readHostTree } from "../config/config-tree.js";
import { SourceConfigSchema } from "../config/source-config.js";
import type { SourceConfig, TrackingRule } from "../core/config.js";
import { describeError } from "../core/errors.js";
import { isLive } from "../core/outcome.js";
import { planHost, type HostPlan } from "../core/plan.js";
import { InvalidConfigError } from "../core/problems.js";
import { resolveTrack } from "../core/track.js";
import type { SourceMirror } from "../git/mirror.js";
import { readTreePair } from "../git/tree-reader.js";
import { prepareEnvironmentPlan, type PreparedPlan } from "../pipeline/plan-environment.js";
import { readTrackingConfig } from "../pipeline/read-source.js";
import type { OperatorQueues } from "../queue/queues.js";
import type { HistoryEntry, Store } from "../store/store.js";
import { HistoryIndex } from "./history-index.js";
import {
  deploymentPage,
  environmentPage,
  notFoundPage,
  overviewPage,
  planPage,
  runningPage,
  type EnvironmentView,
  type HostView,
} from "./pages.js";

/** No script runs and nothing loads from elsewhere, whatever a page holds: escaping has a second line behind it. */
const HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "content-security-policy":
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

/**
 * The operator's web page: read-only, rendered on the server from the store,
 * the source mirror (as of its last fetch) and the deployments under way in
 * Redis. It never fetches, never contacts a host and offers no action.
 */
export class OperatorSite {
  private readonly index: HistoryIndex;
  private readonly pendingPlans = new Map<string, Promise<PreparedPlan>>();

  constructor(
    private readonly store: Store,
    private readonly mirror: SourceMirror,
    private readonly queues: Pick<OperatorQueues, "running" | "runningDeployment" | "lastDrift"> | undefined,
  ) {
    this.index = new HistoryIndex(store);
  }

  /** Reads the store's history ahead of the first request. */
  warm(): Promise<void> {
    return this.index.refresh();
  }

  /** Answers a GET for a page; false if the path is not one of the site's. */
  async serve(path: string, response: ServerResponse, request: IncomingMessage): Promise<boolean> {
    const parts = path.split("/").slice(1);
    let decoded: string[];
    try {
      decoded = parts.map((part) => decodeURIComponent(part));
    } catch {
      this.send(response, request, 400, notFoundPage(`${path} is not a valid address`, this.mirror.url).text);
      return true;
    }
    const [section, first, second] = decoded;
    if (path === "/") return this.send(response, request, 200, await this.overview());
    if (section === "environments" && first && parts.length === 2) return this.send(response, request, ...(await this.environment(first)));
    if (section === "deployments" && first && parts.length === 2) return this.send(response, request, ...(await this.deployment(first)));
    if (section === "plans" && first && second && parts.length === 3)
      return this.send(response, request, ...(await this.plan(first, second)));
    return false;
  }

  private send(response: ServerResponse, request: IncomingMessage, status: number, body: string): true {
    response.writeHead(status, { ...HEADERS, "content-length": Buffer.byteLength(body) });
    response.end(request.method === "HEAD" ? undefined : body);
    return true;
  }

  private async overview(): Promise<string> {
    await this.index.refresh();
    const { config, problem } = await this.trackingConfig();
    const names = [...new Set([...Object.keys(config?.environments ?? {}), ...this.index.environmentNames()])].sort();
    const environments = await Promise.all(names.map((name) => this.environmentView(name, config)));
    return overviewPage({
      repo: this.mirror.url,
      ...(problem ? { configProblem: problem } : {}),
      environments,
      running: (await this.queues?.running()) ?? [],
      recent: this.index.recent(30),
    }).text;
  }

  private async environment(name: string): Promise<[number, string]> {
    await this.index.refresh();
    const { config } = await this.trackingConfig();
    if (!config?.environments[name] && this.index.history(name).length === 0)
      return [404, notFoundPage(`No environment ${name}: it is neither in tidemark.yaml nor in the store.`, this.mirror.url).text];
    return [200, environmentPage(await this.environmentView(name, config), this.mirror.url, this.index.history(name).slice(0, 200)).text];
  }

  private async deployment(id: string): Promise<[number, string]> {
    await this.index.refresh();
    const entry = this.index.deployment(id);
    if (!entry) {
      const running = await this.queues?.runningDeployment(id);
      if (running) return [200, runningPage(running, this.mirror.url).text];
      return [
        404,
        notFoundPage(
          `No deployment ${id} in the store. A deployment shows here once it starts; ids come from commit statuses, tidemark history and the deploy output.`,
          this.mirror.url,
        ).text,
      ];
    }
    return [200, deploymentPage({ entry, plan: await this.deploymentPlan(entry) }, this.mirror.url).text];
  }

  private async plan(environment: string, sha: string): Promise<[number, string]> {
    if (!/^[0-9a-f]{40}$/.test(sha)) return [404, notFoundPage(`${sha} is not a full commit sha`, this.mirror.url).text];
    const source = { ref: sha, commit: sha };
    try {
      const prepared = await prepareEnvironmentPlan(this.mirror, this.store, environment, source);
      return [200, planPage(environment, source, prepared.plan, [], this.mirror.url).text];
    } catch (error) {
      if (error instanceof InvalidConfigError) return [200, planPage(environment, source, undefined, error.problems, this.mirror.url).text];
      return [404, notFoundPage(`No plan for ${environment} at ${sha}: ${describeError(error)}`, this.mirror.url).text];
    }
  }

  private async trackingConfig(): Promise<{ config?: SourceConfig; problem?: string }> {
    try {
      return { config: await readTrackingConfig(this.mirror) };
    } catch (error) {
      return { problem: describeError(error) };
    }
  }

  private async environmentView(name: string, config: SourceConfig | undefined): Promise<EnvironmentView> {
    const history = this.index.history(name);
    const env = config?.environments[name];
    const last = history.find((entry) => entry.trigger !== "unpin");
    let pending: EnvironmentView["pending"] = { problem: env ? "" : "not tracked: tidemark.yaml on the default branch does not name it" };
    if (env) {
      const resolution = resolveTrack(env.track, await this.mirror.refs());
      if (resolution.ref === null) pending = { problem: resolution.reason };
      else {
        try {
          const prepared = await this.pendingPlan(name, resolution, history[0]?.commit);
          pending = { ref: resolution.ref, commit: resolution.commit, plan: prepared.plan };
        } catch (error) {
          pending = {
            problem: `cannot plan ${resolution.commit.slice(0, 7)}: ${error instanceof InvalidConfigError ? "the config tree is invalid" : describeError(error)}`,
            ...(error instanceof InvalidConfigError ? { problems: error.problems } : {}),
          };
        }
      }
    }
    const planned = "plan" in pending ? pending.plan.hosts : [];
    const names = [
      ...new Set([...(env?.hosts ?? []), ...(last?.hosts.map((host) => host.host) ?? []), ...planned.map((host) => host.host)]),
    ].sort();
    const hosts = names.map((host): HostView => {
      const live = history.find((entry) => entry.hosts.some((candidate) => candidate.host === host && isLive(candidate.outcome)));
      const lastOutcome = last?.hosts.find((candidate) => candidate.host === host);
      const plan = planned.find((candidate) => candidate.host === host);
      return {
        host,
        ...(live ? { live: { id: live.id, sourceCommit: live.sourceCommit } } : {}),
        ...(lastOutcome ? { lastOutcome } : {}),
        ...(plan ? { pending: plan } : {}),
      };
    });
    const drift = await this.queues?.lastDrift(name);
    return {
      name,
      ...(env ? { track: trackText(env.track), tree: env.tree } : {}),
      ...(drift ? { drift } : {}),
      ...(history[0]?.pin ? { pin: history[0].pin } : {}),
      ...(last ? { last } : {}),
      hosts,
      pending,
    };
  }

  /** What deploying where the environment points would change: planned again only when the source or the store moved. */
  private pendingPlan(environment: string, source: { ref: string; commit: string }, storeHead: string | undefined): Promise<PreparedPlan> {
    const key = `${environment} ${source.commit} ${storeHead ?? "-"}`;
    let plan = this.pendingPlans.get(key);
    if (!plan) {
      for (const old of this.pendingPlans.keys()) if (old.startsWith(`${environment} `)) this.pendingPlans.delete(old);
      plan = prepareEnvironmentPlan(this.mirror, this.store, environment, source);
      plan.catch(() => this.pendingPlans.delete(key));
      this.pendingPlans.set(key, plan);
    }
    return plan;
  }

  /** What a recorded deployment changed on each host it touched: from the tree live there before it to the tree it brought. */
  private async deploymentPlan(entry: HistoryEntry): Promise<HostPlan[]> {
    const history = this.index.history(entry.environment);
    const earlier = history.slice(history.findIndex((candidate) => candidate.id === entry.id) + 1);
    const config = DEFAULT_CONFIG;
    const plans = await Promise.all(
      entry.hosts
        .filter((host) => host.outcome !== "unchanged")
        .map(async ({ host }) => {
          const before = earlier.find((candidate) => candidate.hosts.some((h) => h.host === host && isLive(h.outcome)));
          const [afterOid, beforeOid] = await Promise.all([
            this.store.reader.treeAt(entry.tree, host),
            before ? this.store.reader.treeAt(before.tree, host) : undefined,
          ]);
          const reader = this.store.reader;
          const [afterDir, beforeDir] = await readTreePair(
            afterOid ? { reader, oid: afterOid, sizes: false } : undefined,
            beforeOid ? { reader, oid: beforeOid, sizes: false } : undefined,
            `${host}/`,
          );
          return planHost(
            host,
            afterDir && readHostTree(config, host, afterDir, []),
            beforeDir && readHostTree(config, host, beforeDir, []),
          );
        }),
    );
    return plans.filter((plan): plan is HostPlan => plan !== undefined);
  }
}

/** Reading a recorded tree needs no limits: it was checked when it was deployed. */
const DEFAULT_CONFIG = SourceConfigSchema.parse({ environments: {}, hosts: {} });

function trackText(track: TrackingRule): string {
  return "branch" in track
    ? `branch ${track.branch}`
    : "tag" in track
      ? `tag ${track.tag} (a pin)`
      : `tags ${track.tags}, newest by semver`;
}
