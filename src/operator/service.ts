import { accessSync, constants, mkdirSync } from "node:fs";
import type { Server } from "node:http";
import { setTimeout as delay } from "node:timers/promises";
import { RateLimitError, UnrecoverableError, Worker, type Job } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { OperatorSettings } from "../config/settings.js";
import { secretOpener } from "../secrets/secret-files.js";
import { describeError, TidemarkError } from "../core/errors.js";
import { redactDeep, type Redactor } from "../core/redact.js";
import { redactReport, reportKey, type Report } from "../core/reports.js";
import { SourceMirror } from "../git/mirror.js";
import { gitHubClient } from "../github/client.js";
import { GitHubReporter, rateLimitWait } from "../github/reporter.js";
import { startHttp, stopHttp, type Readiness } from "../http/server.js";
import { webhookHandler } from "../http/webhook.js";
import {
  deployJobData,
  deployQueueName,
  DRIFT_JOB,
  driftJobData,
  OperatorQueues,
  PREFIX,
  REFS_QUEUE,
  refsJobData,
  REPORT_QUEUE,
  reportBatch,
  type DeployJob,
  type DriftJob,
  type RefsJob,
  type ReportJob,
} from "../queue/queues.js";
import { evictionWarning, redactUrl, redisFactory } from "../queue/redis.js";
import { KnownHosts } from "../remote/known-hosts.js";
import { readSshKey } from "../remote/ssh-key.js";
import { SshPool } from "../remote/ssh-pool.js";
import { Store } from "../store/store.js";
import { OperatorSite } from "../web/site.js";
import { runDeployJob, StoppedError, type DeployJobResult } from "./deploy-job.js";
import { runDriftJob, scheduleDrift, type DriftJobResult } from "./drift-job.js";
import { takeIn, type IntakeResult } from "./intake.js";
import { OperatorMetrics } from "./metrics.js";
import type { Operator } from "./operator.js";

/** How often a process looks for environments it has no worker for yet. */
const DISCOVERY_MS = 1000;

/**
 * A running operator: `serve` (HTTP and workers) or `worker` (workers, and
 * HTTP for health and metrics only if asked). Every process takes push hints
 * and polls from `refs` and deployments from each environment's queue.
 */
export class OperatorService {
  private readonly workers = new Map<string, Worker>();
  private readonly stopping = new AbortController();
  private discovery: NodeJS.Timeout | undefined;
  private server: Server | undefined;
  url: string | undefined;

  private constructor(
    private readonly op: Operator,
    private readonly connections: { queues: Redis; workers: Redis },
    private readonly redact: Redactor,
  ) {}

  static async start(settings: OperatorSettings, role: "serve" | "worker", log: Logger, redact: Redactor): Promise<OperatorService> {
    const connect = redisFactory(settings.redis, settings.redisCa);
    // Queues fail fast when Redis is down (a webhook answers 503 at once, a job step fails and is retried); workers wait for it to come back.
    const connections = { queues: connect({ enableOfflineQueue: false, maxRetriesPerRequest: 0 }), workers: connect() };
    for (const [name, connection] of Object.entries(connections))
      connection.on("error", (error: Error) =>
        log.warn({ connection: name, error: error.message }, "Redis connection error; reconnecting"),
      );
    const queues = new OperatorQueues(connections.queues);
    let hosts: SshPool | undefined;
    try {
      await waitReady(connections.queues, settings.redis);
      const warning = await evictionWarning(connections.queues);
      if (warning) log.warn(warning);
      mkdirSync(settings.mirrors, { recursive: true });
      const github = gitHubClient(settings, log);
      const ssh = { privateKey: settings.sshKey ? readSshKey(settings.sshKey) : undefined, agent: settings.sshAgent };
      // Hosts' connections stay open between deployments: a push pays no SSH handshake.
      hosts = new SshPool(ssh, { idleMs: settings.sshIdle * 1000 });
      const op: Operator = {
        settings,
        mirror: await SourceMirror.open(settings.repo, settings.mirrors),
        store: await Store.open(settings.store, { remote: settings.storeRemote }),
        queues,
        log,
        metrics: new OperatorMetrics(() => queues.counts()),
        deploy: {
          ssh,
          connections: hosts,
          knownHosts: settings.knownHosts ? KnownHosts.read(settings.knownHosts) : undefined,
          settleMs: settings.settle * 1000,
          // Unit and check output is redacted before the store keeps it.
          redact,
        },
        open: secretOpener(settings.ageKeyFile ?? []),
        report: github ? reportTo(queues, log, redact) : () => Promise.resolve(),
      };
      const service = new OperatorService(op, connections, redact);
      if (github) {
        await queues.prepareReports();
        const reporter = new GitHubReporter(github.octokit, github.repo, queues, log, settings.githubDeployments);
        service.work(REPORT_QUEUE, (job: Job<ReportJob>) => service.reportJob(reporter, job));
      }
      await queues.schedulePolling(settings.pollInterval);
      // Push hints in a burst run side by side and share one fetch of the source repo.
      service.work(REFS_QUEUE, (job: Job<RefsJob>) => service.intake(job), 8);
      await service.discover();
      service.discovery = setInterval(() => void service.discover().catch(() => undefined), DISCOVERY_MS);
      if (role === "serve" || settings.listen) await service.listen(role);
      const reporting = github
        ? `${github.repo.owner}/${github.repo.repo} at ${settings.githubApiUrl}`
        : "off (no TIDEMARK_GITHUB_TOKEN or App)";
      log.info(
        {
          repo: op.mirror.url,
          redis: redactUrl(settings.redis),
          store: settings.store,
          pollInterval: settings.pollInterval,
          webhooks: role === "serve" && settings.webhookSecrets.length > 0,
          github: reporting,
          url: service.url,
        },
        `tidemark ${role} started`,
      );
      return service;
    } catch (error) {
      hosts?.close();
      await queues.close().catch(() => undefined);
      connections.queues.disconnect();
      connections.workers.disconnect();
      throw error;
    }
  }

  /**
   * Stops gracefully: no new job, no new host; the hosts in flight finish
   * their apply and the deployment is recorded. Returns false if that took
   * longer than the shutdown timeout (the jobs left are taken over by another
   * worker after takeoverAfter; no host is ever left half-switched).
   */
  async stop(): Promise<boolean> {
    const { log, settings } = this.op;
    log.info({ timeoutSeconds: settings.shutdownTimeout }, "stopping: finishing the hosts in flight");
    this.stopping.abort();
    clearInterval(this.discovery);
    const closing = Promise.all([...this.workers.values()].map((worker) => worker.close()));
    const finished = await Promise.race([closing.then(() => true), delay(settings.shutdownTimeout * 1000, false, { ref: false })]);
    this.op.deploy.connections?.close();
    if (this.server) await stopHttp(this.server);
    if (finished) {
      await this.op.queues.close().catch(() => undefined);
      await Promise.all(Object.values(this.connections).map((connection) => connection.quit().catch(() => connection.disconnect())));
      log.info("stopped");
    } else log.error({ timeoutSeconds: settings.shutdownTimeout }, "shutdown timed out: leaving the jobs in flight to another worker");
    return finished;
  }

  private async listen(role: "serve" | "worker"): Promise<void> {
    const { settings, queues, metrics, log, mirror } = this.op;
    const webhook =
      role === "serve"
        ? webhookHandler({
            secrets: settings.webhookSecrets,
            queues,
            sourceRepo: mirror.url,
            record: (result, fields) => {
              metrics.webhook(result);
              const level = result === "unauthorized" || result === "unavailable" ? "warn" : "info";
              log[level]({ result, ...fields }, `webhook ${result}`);
            },
          })
        : undefined;
    const site = role === "serve" ? new OperatorSite(this.op.store, mirror, queues) : undefined;
    void site
      ?.warm()
      .catch((error: unknown) => log.warn({ error: describeError(error) }, "could not read the store's history for the page"));
    const { server, url } = await startHttp(settings.listen ?? "127.0.0.1:8080", {
      webhook,
      site,
      ready: () => this.readiness(),
      metrics: metrics.registry,
      onError: (error) => log.error({ error: describeError(error) }, "HTTP handler failed"),
    });
    this.server = server;
    this.url = url;
  }

  private async readiness(): Promise<Readiness> {
    const checks: Record<string, string> = {};
    try {
      await Promise.race([this.connections.queues.ping(), delay(1000).then(() => Promise.reject(new Error("no answer within 1 s")))]);
      checks.redis = "ok";
    } catch (error) {
      checks.redis = `unreachable: ${error instanceof Error ? error.message : String(error)}`;
    }
    try {
      accessSync(this.op.store.gitdir, constants.W_OK);
      checks.store = "ok";
    } catch (error) {
      checks.store = `not writable: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
    }
    return { ok: Object.values(checks).every((check) => check === "ok"), checks };
  }

  /** Starts a worker for every environment that has a queue and none here yet. */
  private async discover(): Promise<void> {
    for (const environment of await this.op.queues.environments()) {
      if (this.stopping.signal.aborted) return;
      const name = deployQueueName(environment);
      if (this.workers.has(name)) continue;
      await this.op.queues.deployQueue(environment);
      // stop() may have begun while the queue was opened: a worker started now would never be closed.
      if (this.stopping.signal.aborted) return;
      // An environment not pushed to since the operator started is checked for drift too.
      await scheduleDrift(this.op, environment).catch((error: unknown) =>
        this.op.log.warn({ environment, error: describeError(error) }, "could not set the drift schedule; the next deployment sets it"),
      );
      this.work(name, (job: Job<DeployJob | DriftJob>) => (job.name === DRIFT_JOB ? this.drift(job) : this.deploy(job as Job<DeployJob>)));
    }
  }

  private work<T>(name: string, process: (job: Job<T>) => Promise<unknown>, concurrency = 1): void {
    const { settings, log } = this.op;
    // A job's result and error are kept in Redis: no secret may ride along in them.
    const clean = async (job: Job<T>) => {
      try {
        return redactDeep(await process(job), this.redact);
      } catch (error) {
        if (!(error instanceof Error)) throw error;
        const message = this.redact(error.message);
        if (message === error.message && this.redact(error.stack ?? "") === (error.stack ?? "")) throw error;
        const redacted = new Error(message);
        redacted.name = error.name;
        redacted.stack = this.redact(error.stack ?? "");
        throw redacted;
      }
    };
    const worker = new Worker<T>(name, clean, {
      connection: this.connections.workers,
      prefix: PREFIX,
      concurrency,
      // A worker that dies holds its job until the lock runs out; then another one takes it over.
      lockDuration: settings.takeoverAfter * 1000,
      stalledInterval: settings.takeoverAfter * 1000,
      maxStalledCount: 3,
    });
    worker.on("failed", (job, error) =>
      log.error(
        {
          queue: name,
          job: job?.id,
          attempt: job?.attemptsMade,
          error: error.message,
          retry: !(error.name === "UnrecoverableError") && (job?.attemptsMade ?? 0) < (job?.opts.attempts ?? 1),
        },
        `${name} job failed`,
      ),
    );
    worker.on("error", (error) => log.warn({ queue: name, error: error.message }, "worker error"));
    this.workers.set(name, worker);
  }

  /**
   * Posts a batch of reports in its order. Each is skipped if an earlier
   * attempt of this job posted it, or dropped if a newer one of the same
   * status or deployment went first. The first that fails ends the attempt
   * and the rest wait with it (BullMQ retries the job whole), so no report
   * overtakes one before it in its batch. A long rate limit pauses the whole queue.
   */
  private async reportJob(reporter: GitHubReporter, job: Job<ReportJob>): Promise<string[]> {
    const { queues, log, metrics } = this.op;
    const attempt = job.attemptsMade + 1;
    const done: string[] = [];
    for (const { report, seq } of reportBatch(job.data)) {
      const key = reportKey(report);
      const last = await queues.lastReported(key);
      if (last === seq) continue;
      if (last > seq) {
        metrics.report(report.kind, "dropped");
        log.info({ job: job.id, key, attempt }, "report dropped: a newer one for the same status was posted first");
        done.push(`skipped ${key}: a newer report was posted`);
        continue;
      }
      try {
        done.push(await reporter.post(report));
        await queues.markReported(key, seq);
        metrics.report(report.kind, "posted");
        log.debug({ job: job.id, report: done.at(-1) }, "reported to GitHub");
      } catch (error) {
        const wait = rateLimitWait(error);
        if (wait === undefined) {
          metrics.report(report.kind, "failed");
          log.warn({ job: job.id, key, attempt, error: describeError(error) }, "report to GitHub failed; it is tried again");
          throw error;
        }
        metrics.report(report.kind, "rate-limited");
        log.warn({ waitSeconds: Math.round(wait / 1000) }, "GitHub rate limit: reports wait until it resets");
        await queues.reports.rateLimit(wait);
        throw new RateLimitError();
      }
    }
    return done;
  }

  private async intake(job: Job<RefsJob>): Promise<IntakeResult[]> {
    const data = parsed(refsJobData, job.data);
    const results = await takeIn(this.op, data);
    for (const result of results) {
      const level = result.action === "current" || (result.action === "stays" && data.kind === "poll") ? "debug" : "info";
      this.op.log[level](
        { trigger: data.kind, ...(data.kind === "push" ? { ref: data.ref, delivery: data.delivery } : {}), ...result },
        `${result.environment}: ${result.action}`,
      );
    }
    // A new environment gets its worker now, not at the next discovery tick.
    if (results.some((result) => result.action === "requested")) await this.discover();
    return results;
  }

  private async drift(job: Job<DeployJob | DriftJob>): Promise<DriftJobResult> {
    const { environment } = parsed(driftJobData, job.data);
    this.op.log.debug({ environment, job: job.id }, `${environment}: drift check started`);
    const result = await runDriftJob(this.op, environment, this.stopping.signal);
    if (result.status === "checked") {
      const drifted = result.hosts.filter((host) => host.state === "drift").length;
      this.op.log[drifted > 0 ? "warn" : "info"](
        { environment, commit: result.sourceCommit, hosts: result.hosts.length, drifted, ...(result.heal ? { heal: result.heal } : {}) },
        `${environment}: drift check: ${drifted === 0 ? "no drift" : `drift on ${drifted} of ${result.hosts.length} hosts`}`,
      );
    }
    return result;
  }

  private async deploy(job: Job<DeployJob>): Promise<DeployJobResult> {
    const { log, metrics } = this.op;
    const data = parsed(deployJobData, job.data);
    const { environment } = data;
    const started = performance.now();
    log.info({ environment, job: job.id, trigger: data.trigger, requested: data.requested.commit }, `${environment}: deployment started`);
    try {
      const observe = (host: string, phase: string) =>
        log.debug({ environment, job: job.id, host, phase }, `${environment}: ${host} ${phase}`);
      const result = await runDeployJob(this.op, data, this.stopping.signal, observe);
      const seconds = (performance.now() - started) / 1000;
      metrics.supersededCommits(environment, result.superseded.length);
      if (result.status === "deployed") {
        metrics.deployment(environment, result.outcome, seconds, result.hosts);
        log[result.outcome === "succeeded" ? "info" : "warn"](
          {
            environment,
            deployment: result.id,
            commit: result.sourceCommit,
            ref: result.sourceRef,
            outcome: result.outcome,
            hosts: result.hosts,
            superseded: result.superseded,
            ...(result.returnTo ? { returnTo: result.returnTo } : {}),
            seconds,
          },
          `${environment}: deployment ${result.outcome}`,
        );
      } else {
        metrics.deployment(environment, result.status, seconds);
        log.info({ ...result, seconds }, `${environment}: ${result.status}`);
      }
      return result;
    } catch (error) {
      if (!(error instanceof StoppedError)) metrics.deployment(environment, "error", (performance.now() - started) / 1000);
      throw error;
    }
  }
}

/** A job's data as read back from Redis (a trust boundary): data that does not parse fails the job for good, as every retry would read the same. */
function parsed<T>(parse: (data: unknown) => T, data: unknown): T {
  try {
    return parse(data);
  } catch (error) {
    throw new UnrecoverableError(describeError(error));
  }
}

/** Queues a batch of reports; a Redis hiccup costs a status, never a deployment. */
function reportTo(queues: OperatorQueues, log: Logger, redact: Redactor): Operator["report"] {
  return async (reports: Report[]) => {
    try {
      await queues.addReports(reports.map((report) => redactReport(report, redact)));
    } catch (error) {
      log.warn({ error: describeError(error), reports: reports.length }, "could not queue reports for GitHub");
    }
  };
}

async function waitReady(redis: Redis, url: string): Promise<void> {
  if (redis.status === "ready") return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new TidemarkError(
            "REDIS_UNREACHABLE",
            `Redis at ${redactUrl(url)} did not answer within 10 s`,
            "check --redis (TIDEMARK_REDIS_URL): host, port, password, and rediss:// for TLS",
          ),
        ),
      10_000,
    );
    redis.once("ready", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
