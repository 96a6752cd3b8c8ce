import { Queue, type JobsOptions } from "bullmq";
import type { Redis } from "ioredis";
import { z } from "zod";
import { fieldPath } from "../config/zod-problems.js";
import { TidemarkError } from "../core/errors.js";
import type { DriftPolicy } from "../core/config.js";
import type { HostDrift } from "../core/drift.js";
import type { Trigger } from "../core/outcome.js";
import type { Report } from "../core/reports.js";

/** Every key Tidemark writes to Redis starts with this. */
export const PREFIX = "tidemark";
/** Push hints and polls: each becomes deployment requests for the environments it moves. */
export const REFS_QUEUE = "refs";
export const deployQueueName = (environment: string) => `deploy.${environment}`;
/** What goes back to GitHub: commit statuses and Deployments, posted one at a time, in order, whatever GitHub's mood. */
export const REPORT_QUEUE = "report";

/** A `push` webhook, reduced to what matters: which ref moved. A hint: the deploy job resolves the ref again when it runs. */
const PushHintSchema = z.object({
  kind: z.literal("push"),
  ref: z.string().min(1),
  after: z.string(),
  deleted: z.boolean(),
  delivery: z.string(),
});
export type PushHint = z.infer<typeof PushHintSchema>;

/** A `pull_request` webhook (opened, synchronize, reopened): its head is planned against what the environments run. */
const PullRequestHintSchema = z.object({
  kind: z.literal("pull-request"),
  number: z.number().int().positive(),
  head: z.string().min(1),
  base: z.string().min(1),
  /** A pull request from a fork: its objects are read, nothing in it is ever trusted with credentials. */
  fork: z.boolean(),
  delivery: z.string(),
});
export type PullRequestHint = z.infer<typeof PullRequestHintSchema>;

const RefsJobSchema = z.discriminatedUnion("kind", [PushHintSchema, PullRequestHintSchema, z.object({ kind: z.literal("poll") })]);
export type RefsJob = z.infer<typeof RefsJobSchema>;

/** A report and its place in the order of enqueueing: a report older than the last one posted for the same status or deployment is dropped. */
export interface SequencedReport {
  report: Report;
  seq: number;
}

/**
 * One job per batch of reports, posted in the batch's order and retried
 * whole (the reports an earlier attempt posted are skipped by their seq): a
 * deployment's final statuses are one batch, so the environment's status,
 * last in it, never overtakes a host's that is waiting out a backoff.
 */
export interface ReportJob {
  reports: SequencedReport[];
}

const StatusSchema = z.strictObject({
  sha: z.string(),
  context: z.string(),
  state: z.enum(["pending", "success", "failure", "error"]),
  description: z.string(),
  targetUrl: z.string().optional(),
});
const DeploymentReportSchema = z.strictObject({
  id: z.string(),
  environment: z.string(),
  sha: z.string(),
  state: z.enum(["in_progress", "success", "failure", "error"]),
  description: z.string(),
  targetUrl: z.string().optional(),
});
const SequencedReportSchema = z.object({
  report: z.discriminatedUnion("kind", [
    z.object({ kind: z.literal("status"), status: StatusSchema }),
    z.object({ kind: z.literal("deployment"), deployment: DeploymentReportSchema }),
  ]),
  seq: z.number().int().positive(),
});
// A job queued by a Tidemark from before batches ({ report, seq }) is a batch of one: an upgrade loses no report.
const ReportJobSchema = z.union([
  z.object({ reports: z.array(SequencedReportSchema).min(1) }),
  SequencedReportSchema.transform((one) => ({ reports: [one] })),
]);

/** A report job's data as read back from Redis (a trust boundary): its batch, or an error naming what is wrong. */
export function reportBatch(data: unknown): SequencedReport[] {
  return ReportJobSchema.parse(data).reports;
}

const DeployJobSchema = z.object({
  environment: z.string().min(1),
  trigger: z.enum(["webhook", "poll", "cli"]) satisfies z.ZodType<Trigger>,
  /** The commit the request saw; the job deploys wherever the environment points when it runs. */
  requested: z.object({ ref: z.string().min(1), commit: z.string().min(1) }),
});
export type DeployJob = z.infer<typeof DeployJobSchema>;

/**
 * The drift check of an environment: a job in the environment's deploy
 * queue, so that it never runs while a deployment of it does, made by a
 * job scheduler every `drift.interval`.
 */
export const DRIFT_JOB = "drift";
const DriftJobSchema = z.object({ environment: z.string().min(1) });
export type DriftJob = z.infer<typeof DriftJobSchema>;

/** An environment's last drift check as the page shows it: when, against which commit, and each host's result (paths and kinds only). */
export interface DriftCheck {
  checkedAt: string;
  sourceCommit: string;
  hosts: HostDrift[];
}

export function driftJobData(data: unknown): DriftJob {
  return parseJob("drift", DriftJobSchema, data);
}

/** A refs job's data as read back from Redis (a trust boundary): the hint or poll, or a JOB_DATA_INVALID error that names what is wrong. */
export function refsJobData(data: unknown): RefsJob {
  return parseJob("refs", RefsJobSchema, data);
}

/** A deploy job's data as read back from Redis, or a JOB_DATA_INVALID error that names what is wrong. */
export function deployJobData(data: unknown): DeployJob {
  return parseJob("deploy", DeployJobSchema, data);
}

function parseJob<T>(queue: string, schema: z.ZodType<T>, data: unknown): T {
  const parsed = schema.safeParse(data);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => `${fieldPath(issue.path)}: ${issue.message}`).join("; ");
  throw new TidemarkError(
    "JOB_DATA_INVALID",
    `a ${queue} job's data in Redis is malformed: ${problems}`,
    "it was queued by another version of Tidemark or written by hand; a push, the next poll or tidemark deploy asks again",
  );
}

/** A deployment under way, for the operator's page until the store records it. */
export const RunningDeploymentSchema = z.object({
  id: z.string(),
  environment: z.string(),
  sourceCommit: z.string(),
  sourceRef: z.string(),
  startedAt: z.iso.datetime(),
  hosts: z.array(z.string()),
});
export type RunningDeployment = z.infer<typeof RunningDeploymentSchema> & { steps: Array<{ host: string; phase: string; at: number }> };

const KEEP = { removeOnComplete: { count: 200 }, removeOnFail: { count: 200 } } satisfies JobsOptions;
/** How long a delivery id is remembered: GitHub redelivers on request for days. */
const DELIVERY_TTL_SECONDS = 7 * 24 * 3600;
/** A deployment shown as under way whose worker died stops showing after this. */
const RUNNING_TTL_SECONDS = 6 * 3600;
/** Report bookkeeping outlives any retry of a report by far. */
const REPORT_TTL_SECONDS = 30 * 24 * 3600;

/**
 * The operator's queues on one Redis, shared by every server and worker:
 * `refs` for push hints and polls, one `deploy.<env>` queue per environment
 * (global concurrency 1: one deployment at a time per environment), and a few
 * keys of Tidemark's own under the same prefix.
 */
export class OperatorQueues {
  readonly refs: Queue<RefsJob>;
  readonly reports: Queue<ReportJob>;
  private readonly deployQueues = new Map<string, Promise<Queue<DeployJob | DriftJob>>>();

  constructor(readonly redis: Redis) {
    this.refs = new Queue<RefsJob>(REFS_QUEUE, {
      connection: redis,
      prefix: PREFIX,
      defaultJobOptions: { ...KEEP, attempts: 5, backoff: { type: "exponential", delay: 1000 } },
    });
    // Twelve attempts backing off from 10 s: a GitHub outage of up to about 11 hours loses no status.
    this.reports = new Queue<ReportJob>(REPORT_QUEUE, {
      connection: redis,
      prefix: PREFIX,
      defaultJobOptions: {
        removeOnComplete: { count: 1000 },
        removeOnFail: { count: 1000 },
        attempts: 12,
        backoff: { type: "exponential", delay: 10_000 },
      },
    });
  }

  /** One report queue for every process: one report at a time, so that statuses reach GitHub in the order they were made. */
  async prepareReports(): Promise<void> {
    await this.reports.setGlobalConcurrency(1);
  }

  /** Queues reports as one batch, posted in this order (see ReportJob). */
  async addReports(reports: Report[]): Promise<void> {
    if (reports.length === 0) return;
    const last = await this.redis.incrby(this.key("report-seq"), reports.length);
    await this.reports.add("reports", { reports: reports.map((report, i) => ({ report, seq: last - reports.length + 1 + i })) });
  }

  /** The seq of the last report posted under a key (0: none); `markReported` records it once posted. */
  async lastReported(key: string): Promise<number> {
    return Number((await this.redis.get(this.key("reported", key))) ?? 0);
  }

  async markReported(key: string, seq: number): Promise<void> {
    await this.redis.set(this.key("reported", key), String(seq), "EX", REPORT_TTL_SECONDS);
  }

  /** The GitHub deployment made for a Tidemark deployment, once created. */
  async gitHubDeployment(id: string): Promise<number | undefined> {
    const value = await this.redis.get(this.key("github-deployment", id));
    return value === null ? undefined : Number(value);
  }

  async setGitHubDeployment(id: string, gitHubId: number): Promise<void> {
    await this.redis.set(this.key("github-deployment", id), String(gitHubId), "EX", REPORT_TTL_SECONDS);
  }

  /** True the first time a delivery is seen: redeliveries (same hook, same GUID) return false. */
  async firstDelivery(hookId: string, guid: string): Promise<boolean> {
    return (await this.redis.set(this.key("deliveries", hookId, guid), "1", "EX", DELIVERY_TTL_SECONDS, "NX")) === "OK";
  }

  /** True the first time an environment is found on a commit that its last deployment left short (another attempt finished it). */
  async firstConverged(environment: string, commit: string): Promise<boolean> {
    return (await this.redis.set(this.key("converged", environment, commit), "1", "EX", DELIVERY_TTL_SECONDS, "NX")) === "OK";
  }

  /** Forgets a delivery that could not be queued, so that GitHub's redelivery is taken. */
  async forgetDelivery(hookId: string, guid: string): Promise<void> {
    await this.redis.del(this.key("deliveries", hookId, guid));
  }

  async addHint(hint: PushHint | PullRequestHint): Promise<string | undefined> {
    return (await this.refs.add(hint.kind, hint)).id;
  }

  async deployQueue(environment: string): Promise<Queue<DeployJob | DriftJob>> {
    let queue = this.deployQueues.get(environment);
    if (!queue) {
      queue = (async () => {
        const created = new Queue<DeployJob | DriftJob>(deployQueueName(environment), { connection: this.redis, prefix: PREFIX });
        await created.setGlobalConcurrency(1);
        return created;
      })();
      this.deployQueues.set(environment, queue);
    }
    return queue;
  }

  /**
   * Asks for a deployment of the environment. Requests collapse: while one
   * runs, only the newest waits (the others are reported superseded when it
   * is deployed); a waiting one absorbs the rest, as it resolves the ref
   * when it starts anyway.
   */
  async requestDeployment(job: DeployJob): Promise<void> {
    const { environment } = job;
    await this.noteRequested(environment, job.requested.commit);
    await this.redis.hset(this.key("enqueued", environment), job.requested);
    const queue = await this.deployQueue(environment);
    await queue.add("deploy", job, {
      ...KEEP,
      attempts: 5,
      backoff: { type: "exponential", delay: 2000 },
      deduplication: { id: environment, keepLastIfActive: true },
    });
  }

  /** Remembers a commit that was asked for, to report it superseded if a newer one is deployed instead. */
  async noteRequested(environment: string, commit: string): Promise<void> {
    const seq = await this.redis.incr(this.key("seq"));
    await this.redis.multi().sadd(this.key("environments"), environment).zadd(this.key("requested", environment), "NX", seq, commit).exec();
  }

  /** A point in the order of requests: what was requested up to here is visible to a fetch that starts after it. */
  async sequence(): Promise<number> {
    return Number((await this.redis.get(this.key("seq"))) ?? 0);
  }

  /** The commits asked for up to `upTo` (see `sequence`), oldest first: a deployment of another one supersedes them. */
  async requested(environment: string, upTo: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.key("requested", environment), "-inf", upTo);
  }

  /** Forgets the requested commits a job settled (deployed them or one in their place): those it read, so that a request that came in since is the next job's. */
  async forgetRequested(environment: string, commits: readonly string[]): Promise<void> {
    if (commits.length > 0) await this.redis.zrem(this.key("requested", environment), ...commits);
  }

  /** What was last asked for: polls do not ask again for the same commit. */
  async lastRequested(environment: string): Promise<{ ref: string; commit: string } | undefined> {
    const value = await this.redis.hgetall(this.key("enqueued", environment));
    return value.ref && value.commit ? { ref: value.ref, commit: value.commit } : undefined;
  }

  /** Remembers the commit a pinned environment holds back; true if it is another one than last time (worth a status). */
  async markWaiting(environment: string, commit: string): Promise<boolean> {
    return (await this.redis.getset(this.key("waiting", environment), commit)) !== commit;
  }

  async clearWaiting(environment: string): Promise<void> {
    await this.redis.del(this.key("waiting", environment));
  }

  /** Hosts that a passing failure (unreachable, locked, cut off) left behind: polls ask for the commit again until they run it. */
  async markBehind(environment: string, behind: boolean): Promise<void> {
    await (behind ? this.redis.set(this.key("behind", environment), "1") : this.redis.del(this.key("behind", environment)));
  }

  async isBehind(environment: string): Promise<boolean> {
    return (await this.redis.exists(this.key("behind", environment))) === 1;
  }

  /** Whether a pinned environment holds a commit back: polls ask for it again, to deploy it once unpinned. */
  async isWaiting(environment: string): Promise<boolean> {
    return (await this.redis.exists(this.key("waiting", environment))) === 1;
  }

  /** Shows a deployment as under way; it ends with `endRunning`, or on its own after RUNNING_TTL_SECONDS if its worker died. */
  async startRunning(deployment: Omit<RunningDeployment, "steps">): Promise<void> {
    await this.redis
      .multi()
      .set(this.key("running", deployment.id), JSON.stringify(deployment), "EX", RUNNING_TTL_SECONDS)
      .zadd(this.key("running"), Date.parse(deployment.startedAt), deployment.id)
      .exec();
  }

  /** One host's step, `at` ms after the deployment started. */
  async runningStep(id: string, host: string, phase: string, at: number): Promise<void> {
    await this.redis
      .multi()
      .rpush(this.key("running", id, "steps"), `${host} ${phase} ${at}`)
      .expire(this.key("running", id, "steps"), RUNNING_TTL_SECONDS)
      .exec();
  }

  async endRunning(id: string): Promise<void> {
    await this.redis
      .multi()
      .del(this.key("running", id), this.key("running", id, "steps"))
      .zrem(this.key("running"), id)
      .exec();
  }

  /** The deployments under way, newest first; entries whose worker died long ago are dropped. */
  async running(): Promise<RunningDeployment[]> {
    const ids = await this.redis.zrevrange(this.key("running"), 0, 99);
    const found = await Promise.all(ids.map((id) => this.runningDeployment(id)));
    const gone = ids.filter((_, i) => found[i] === undefined);
    if (gone.length > 0) await this.redis.zrem(this.key("running"), ...gone);
    return found.filter((deployment): deployment is RunningDeployment => deployment !== undefined);
  }

  async runningDeployment(id: string): Promise<RunningDeployment | undefined> {
    const [meta, steps] = await Promise.all([
      this.redis.get(this.key("running", id)),
      this.redis.lrange(this.key("running", id, "steps"), 0, -1),
    ]);
    if (meta === null) return undefined;
    let parsed;
    try {
      parsed = RunningDeploymentSchema.safeParse(JSON.parse(meta));
    } catch {
      return undefined;
    }
    if (!parsed.success) return undefined;
    return {
      ...parsed.data,
      steps: steps.map((step) => {
        const [host = "", phase = "", at = "0"] = step.split(" ");
        return { host, phase, at: Number(at) };
      }),
    };
  }

  /** Every environment ever asked for: the workers listen on their queues. */
  async environments(): Promise<string[]> {
    return (await this.redis.smembers(this.key("environments"))).sort();
  }

  /**
   * Makes the environment's drift schedule what its policy says: every
   * `intervalSeconds`, or none when `off`. One schedule for every process;
   * unchanged when it is already so. Each deploy job and each drift job sets
   * it from the config it read, so the schedule follows what was pushed.
   */
  async syncDriftSchedule(environment: string, policy: DriftPolicy): Promise<void> {
    const queue = await this.deployQueue(environment);
    const scheduled = await queue.getJobScheduler(DRIFT_JOB);
    if (policy.mode === "off") {
      if (scheduled) await queue.removeJobScheduler(DRIFT_JOB);
      return;
    }
    if (Number(scheduled?.every) === policy.intervalSeconds * 1000) return;
    // The first check one interval from now: a host just deployed was snapshotted as it went live.
    const every = policy.intervalSeconds * 1000;
    await queue.upsertJobScheduler(
      DRIFT_JOB,
      { every, startDate: Date.now() + every },
      { name: DRIFT_JOB, data: { environment }, opts: { ...KEEP, attempts: 1 } },
    );
  }

  /** The last drift status posted for an environment, to post a new one only when it says something else. */
  async swapDriftStatus(environment: string, status: string): Promise<boolean> {
    return (await this.redis.getset(this.key("drift-status", environment), status)) !== status;
  }

  /** Keeps an environment's last drift check for the operator's page. */
  async saveDrift(environment: string, check: DriftCheck): Promise<void> {
    await this.redis.set(this.key("drift", environment), JSON.stringify(check));
  }

  /** The environment's last drift check, if the operator made one. */
  async lastDrift(environment: string): Promise<DriftCheck | undefined> {
    const saved = await this.redis.get(this.key("drift", environment));
    return saved ? (JSON.parse(saved) as DriftCheck) : undefined;
  }

  /** Counts a heal of a host; heals older than `windowMs` are forgotten. */
  async noteHeal(environment: string, host: string, now: number, windowMs: number): Promise<void> {
    const key = this.key("heals", environment, host);
    await this.redis
      .multi()
      .zremrangebyscore(key, "-inf", now - windowMs)
      .zadd(key, now, String(now))
      .pexpire(key, windowMs)
      .exec();
  }

  /** Heals of a host within the last `windowMs`. */
  async heals(environment: string, host: string, now: number, windowMs: number): Promise<number> {
    return this.redis.zcount(this.key("heals", environment, host), now - windowMs, "+inf");
  }

  /** Polls the source repo every `seconds` (0: never); one schedule for all servers and workers. */
  async schedulePolling(seconds: number): Promise<void> {
    if (seconds > 0)
      await this.refs.upsertJobScheduler(
        "poll",
        { every: seconds * 1000 },
        { name: "poll", data: { kind: "poll" }, opts: { ...KEEP, attempts: 1 } },
      );
    else await this.refs.removeJobScheduler("poll");
  }

  async counts(): Promise<Map<string, Record<string, number>>> {
    const queues = [this.refs, this.reports, ...(await Promise.all(this.deployQueues.values()))] as Array<Queue<unknown>>;
    return new Map(
      await Promise.all(
        queues.map(async (queue) => [queue.name, await queue.getJobCounts("waiting", "active", "delayed", "failed")] as const),
      ),
    );
  }

  async close(): Promise<void> {
    const queues = [this.refs, this.reports, ...(await Promise.all(this.deployQueues.values()))] as Array<Queue<unknown>>;
    await Promise.all(queues.map((queue) => queue.close()));
  }

  private key(...parts: string[]): string {
    return [PREFIX, ...parts].join(":");
  }
}
