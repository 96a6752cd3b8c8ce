import { Queue, type JobsOptions } from "bullmq";
import type { Redis } from "ioredis";
import type { Trigger } from "../core/outcome.js";

/** Every key Tidemark writes to Redis starts with this. */
export const PREFIX = "tidemark";
/** Push hints and polls: each becomes deployment requests for the environments it moves. */
export const REFS_QUEUE = "refs";
export const deployQueueName = (environment: string) => `deploy.${environment}`;

/** A `push` webhook, reduced to what matters: which ref moved. A hint: the deploy job resolves the ref again when it runs. */
export interface PushHint {
  kind: "push";
  ref: string;
  after: string;
  deleted: boolean;
  delivery: string;
}

export type RefsJob = PushHint | { kind: "poll" };

export interface DeployJob {
  environment: string;
  trigger: Extract<Trigger, "webhook" | "poll">;
  /** The commit the request saw; the job deploys wherever the environment points when it runs. */
  requested: { ref: string; commit: string };
}

const KEEP = { removeOnComplete: { count: 200 }, removeOnFail: { count: 200 } } satisfies JobsOptions;
/** How long a delivery id is remembered: GitHub redelivers on request for days. */
const DELIVERY_TTL_SECONDS = 7 * 24 * 3600;

/**
 * The operator's queues on one Redis, shared by every server and worker:
 * `refs` for push hints and polls, one `deploy.<env>` queue per environment
 * (global concurrency 1: one deployment at a time per environment), and a few
 * keys of Tidemark's own under the same prefix.
 */
export class OperatorQueues {
  readonly refs: Queue<RefsJob>;
  private readonly deployQueues = new Map<string, Promise<Queue<DeployJob>>>();

  constructor(readonly redis: Redis) {
    this.refs = new Queue<RefsJob>(REFS_QUEUE, { connection: redis, prefix: PREFIX, defaultJobOptions: { ...KEEP, attempts: 5, backoff: { type: "exponential", delay: 1000 } } });
  }

  /** True the first time a delivery is seen: redeliveries (same hook, same GUID) return false. */
  async firstDelivery(hookId: string, guid: string): Promise<boolean> {
    return (await this.redis.set(this.key("deliveries", hookId, guid), "1", "EX", DELIVERY_TTL_SECONDS, "NX")) === "OK";
  }

  /** Forgets a delivery that could not be queued, so that GitHub's redelivery is taken. */
  async forgetDelivery(hookId: string, guid: string): Promise<void> {
    await this.redis.del(this.key("deliveries", hookId, guid));
  }

  async addPush(hint: PushHint): Promise<string | undefined> {
    return (await this.refs.add("push", hint)).id;
  }

  async deployQueue(environment: string): Promise<Queue<DeployJob>> {
    let queue = this.deployQueues.get(environment);
    if (!queue) {
      queue = (async () => {
        const created = new Queue<DeployJob>(deployQueueName(environment), { connection: this.redis, prefix: PREFIX });
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
    await queue.add("deploy", job, { ...KEEP, attempts: 5, backoff: { type: "exponential", delay: 2000 }, deduplication: { id: environment, keepLastIfActive: true } });
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

  /** Takes the requested commits up to `upTo`: the ones that are not `deployed` were superseded by it. */
  async takeRequested(environment: string, upTo: number, deployed: string): Promise<string[]> {
    const key = this.key("requested", environment);
    const [[, commits]] = (await this.redis.multi().zrangebyscore(key, "-inf", upTo).zremrangebyscore(key, "-inf", upTo).exec()) as [[Error | null, string[]]];
    return commits.filter((commit) => commit !== deployed);
  }

  /** What was last asked for: polls do not ask again for the same commit. */
  async lastRequested(environment: string): Promise<{ ref: string; commit: string } | undefined> {
    const value = await this.redis.hgetall(this.key("enqueued", environment));
    return value.ref && value.commit ? { ref: value.ref, commit: value.commit } : undefined;
  }

  /** Every environment ever asked for: the workers listen on their queues. */
  async environments(): Promise<string[]> {
    return (await this.redis.smembers(this.key("environments"))).sort();
  }

  /** Polls the source repo every `seconds` (0: never); one schedule for all servers and workers. */
  async schedulePolling(seconds: number): Promise<void> {
    if (seconds > 0) await this.refs.upsertJobScheduler("poll", { every: seconds * 1000 }, { name: "poll", data: { kind: "poll" }, opts: { ...KEEP, attempts: 1 } });
    else await this.refs.removeJobScheduler("poll");
  }

  async counts(): Promise<Map<string, Record<string, number>>> {
    const queues = [this.refs, ...(await Promise.all(this.deployQueues.values()))] as Array<Queue<unknown>>;
    return new Map(await Promise.all(queues.map(async (queue) => [queue.name, await queue.getJobCounts("waiting", "active", "delayed", "failed")] as const)));
  }

  async close(): Promise<void> {
    const queues = [this.refs, ...(await Promise.all(this.deployQueues.values()))] as Array<Queue<unknown>>;
    await Promise.all(queues.map((queue) => queue.close()));
  }

  private key(...parts: string[]): string {
    return [PREFIX, ...parts].join(":");
  }
}
