import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { DRIFT_KINDS, type HostDrift } from "../core/drift.js";
import type { HostResult } from "../remote/apply-host.js";
import type { WebhookResult } from "../http/webhook.js";

/** The operator's Prometheus metrics, on a registry of its own (`/metrics`). */
export class OperatorMetrics {
  readonly registry = new Registry();
  private readonly webhooks = new Counter({
    name: "tidemark_webhook_deliveries_total",
    help: "Webhook deliveries, by what became of them",
    labelNames: ["result"],
    registers: [this.registry],
  });
  private readonly deployments = new Counter({
    name: "tidemark_deployments_total",
    help: "Deployment jobs, by environment and outcome",
    labelNames: ["environment", "outcome"],
    registers: [this.registry],
  });
  private readonly hosts = new Counter({
    name: "tidemark_host_outcomes_total",
    help: "Host outcomes of deployments, by environment and outcome",
    labelNames: ["environment", "outcome"],
    registers: [this.registry],
  });
  private readonly rollbacks = new Counter({
    name: "tidemark_auto_rollbacks_total",
    help: "Hosts that rolled themselves back after a failed deployment",
    labelNames: ["environment"],
    registers: [this.registry],
  });
  private readonly superseded = new Counter({
    name: "tidemark_superseded_commits_total",
    help: "Requested commits never deployed because a newer one was",
    labelNames: ["environment"],
    registers: [this.registry],
  });
  private readonly reports = new Counter({
    name: "tidemark_github_reports_total",
    help: "Reports to GitHub (commit statuses, deployments), by kind and result: posted, dropped (a newer one went first), failed (retried), rate-limited",
    labelNames: ["kind", "result"],
    registers: [this.registry],
  });
  private readonly deploymentSeconds = new Histogram({
    name: "tidemark_deployment_duration_seconds",
    help: "Deployment jobs from start to recorded",
    labelNames: ["environment"],
    buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
    registers: [this.registry],
  });
  private readonly hostSeconds = new Histogram({
    name: "tidemark_host_apply_duration_seconds",
    help: "One host's apply, connect to commit (or rollback)",
    labelNames: ["environment"],
    buckets: [0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });

  private readonly driftHosts = new Gauge({
    name: "tidemark_drift_hosts",
    help: "Hosts that differ from the release recorded for them, at the environment's last drift check",
    labelNames: ["environment"],
    registers: [this.registry],
  });
  private readonly driftFindings = new Gauge({
    name: "tidemark_drift_findings",
    help: "Differences found at the environment's last drift check, by kind",
    labelNames: ["environment", "kind"],
    registers: [this.registry],
  });

  constructor(queueCounts?: () => Promise<Map<string, Record<string, number>>>) {
    collectDefaultMetrics({ register: this.registry, prefix: "tidemark_" });
    if (queueCounts) {
      new Gauge({
        name: "tidemark_queue_jobs",
        help: "Jobs in the operator's queues, by queue and state",
        labelNames: ["queue", "state"],
        registers: [this.registry],
        async collect() {
          this.reset();
          for (const [queue, counts] of await queueCounts().catch(() => new Map<string, Record<string, number>>())) {
            for (const [state, count] of Object.entries(counts)) this.set({ queue, state }, count);
          }
        },
      });
    }
  }

  webhook(result: WebhookResult): void {
    this.webhooks.inc({ result });
  }

  deployment(environment: string, outcome: string, seconds: number, hosts: HostResult[] = []): void {
    this.deployments.inc({ environment, outcome });
    this.deploymentSeconds.observe({ environment }, seconds);
    for (const host of hosts) {
      this.hosts.inc({ environment, outcome: host.outcome });
      if (host.outcome === "rolled-back") this.rollbacks.inc({ environment });
      if (host.durationMs !== undefined) this.hostSeconds.observe({ environment }, host.durationMs / 1000);
    }
  }

  report(kind: string, result: "posted" | "dropped" | "failed" | "rate-limited"): void {
    this.reports.inc({ kind, result });
  }

  drift(environment: string, hosts: readonly HostDrift[]): void {
    this.driftHosts.set({ environment }, hosts.filter((host) => host.state === "drift").length);
    for (const kind of DRIFT_KINDS)
      this.driftFindings.set(
        { environment, kind },
        hosts.flatMap((host) => host.findings).filter((finding) => finding.kind === kind).length,
      );
  }

  supersededCommits(environment: string, count: number): void {
    if (count > 0) this.superseded.inc({ environment }, count);
  }
}
