import { TestBed } from "../test/bed/bed.js";
import { WorkRepo } from "../test/bed/work-repo.js";
import { appFiles, fleetConfig, splitFleet } from "../test/campaign/fleet.js";
import { operatorEnv } from "../test/helpers/host-shell.js";
import { OperatorProcess, type LogLine } from "../test/helpers/operator-process.js";
import { median, ms, ratio } from "../test/helpers/report.js";
import type { Bench } from "./section.js";

const ENVIRONMENTS = 20;
const HOSTS_PER_ENV = 2;
const ROUNDS = Number(process.env.TIDEMARK_BENCH_ROUNDS ?? 5);

/**
 * Scale-out on Redis: one push that moves 20 environments at once (40 light
 * hosts), deployed by one worker process, then by three, against one Redis
 * and one shared store remote; the two set-ups take turns round by round.
 */
const bench: Bench = async (log) => {
  const bed = await TestBed.up({ lightHosts: ENVIRONMENTS * HOSTS_PER_ENV, redis: true, forge: true });
  const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
  const operators = [operatorEnv(bed), operatorEnv(bed), operatorEnv(bed)];
  try {
    const layout = splitFleet(bed.hosts, ENVIRONMENTS);
    const envs = [...layout.environments.keys()];
    await bed.forge!.createRepo("acme", "tidemark-store", { private: true });
    const storeRemote = bed.forge!.pushUrl("acme/tidemark-store");
    const everywhere = (version: string) =>
      Object.assign(
        {},
        ...envs.flatMap((env) => layout.environments.get(env)!.map((host) => appFiles(env, host.name, version, false))),
      ) as Record<string, string>;
    await work.commit({ "tidemark.yaml": fleetConfig(layout), ...everywhere("v0") }, "v0");
    await work.push("main", ...envs.map((env) => `main:refs/heads/${env}`));
    const start = (i: number) =>
      OperatorProcess.start("worker", {
        ...operators[i]!.env,
        TIDEMARK_STORE_REMOTE: storeRemote,
        TIDEMARK_REDIS_URL: bed.redis!.url,
        TIDEMARK_POLL_INTERVAL: "1",
        TIDEMARK_SETTLE: "0",
      });

    /** Pushes every environment's branch at once; the time until each environment has recorded that commit. */
    const round = async (workers: OperatorProcess[], version: string): Promise<number> => {
      const sha = await work.commit(everywhere(version), version);
      const marks = workers.map((worker) => worker.lines.length);
      const began = performance.now();
      await work.push(...envs.map((env) => `main:refs/heads/${env}`));
      const done = (line: LogLine) => line.commit === sha && line.outcome === "succeeded";
      for (;;) {
        const finished = new Set(
          workers.flatMap((worker, i) =>
            worker.lines
              .slice(marks[i])
              .filter(done)
              .map((line) => line.environment),
          ),
        );
        if (finished.size === envs.length) return performance.now() - began;
        if (performance.now() - began > 180_000)
          throw new Error(`only ${finished.size} of ${envs.length} environments deployed ${version} within 3 minutes`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };

    const times: Record<"one" | "three", number[]> = { one: [], three: [] };
    const spread: number[] = [];
    for (let r = 0; r <= ROUNDS; r++) {
      for (const setup of r % 2 === 0 ? (["one", "three"] as const) : (["three", "one"] as const)) {
        const workers = await Promise.all((setup === "one" ? [0] : [0, 1, 2]).map(start));
        // Round 0 deploys v0 (polls find it) and warms mirrors and stores; it is not measured.
        if (r === 0) await round(workers, `warm-${setup}`);
        else {
          const mark = workers.map((worker) => worker.lines.length);
          times[setup].push(await round(workers, `r${r}-${setup}`));
          if (setup === "three")
            spread.push(
              Math.max(
                ...workers.map(
                  (worker, i) =>
                    worker.lines.slice(mark[i]).filter((line) => typeof line.deployment === "string" && typeof line.outcome === "string")
                      .length,
                ),
              ),
            );
        }
        await Promise.all(workers.map((worker) => worker.stop()));
      }
      log(`round ${r} done`);
    }
    const one = median(times.one);
    const three = median(times.three);
    return [
      {
        title: "Scale-out: three worker processes vs one",
        setup: `One push moves ${ENVIRONMENTS} environments at once (${ENVIRONMENTS * HOSTS_PER_ENV} light hosts, a one-file change each); timed from the push until every environment has recorded the commit. One \`tidemark worker\`, then three in separate processes (each its own mirror and local store), against one Redis and one shared store remote; the set-ups take turns, median of ${ROUNDS} rounds. The machine has 2 cores.`,
        header: ["workers", `${ENVIRONMENTS} environments deployed in`, "deployments per second"],
        rows: [
          ["1 process", ms(one), (ENVIRONMENTS / (one / 1000)).toFixed(1)],
          ["3 processes", ms(three), (ENVIRONMENTS / (three / 1000)).toFixed(1)],
        ],
        notes: [
          `Three processes take ${ratio(three, one)} the time of one (throughput ${ratio(one, three)}). One process already runs the ${ENVIRONMENTS} environments' queues at once; the machine has 2 cores.`,
          Math.max(...spread) === ENVIRONMENTS
            ? `With three processes, one process took all ${ENVIRONMENTS} deployments in ${spread.filter((n) => n === ENVIRONMENTS).length} of ${spread.length} rounds (median ${median(spread)}): every process runs every environment's queue, and Redis hands each job to the worker that has waited longest, so one process that can take them all does. On this workload more processes bring failover (the campaign's chaos scenario), not throughput.`
            : `With three processes, the busiest one ran at most ${Math.max(...spread)} of the ${ENVIRONMENTS} deployments of a round (median ${median(spread)}).`,
        ],
      },
    ];
  } finally {
    await OperatorProcess.stopAll();
    work.remove();
    for (const operator of operators) operator.remove();
    await bed.down();
  }
};

export default bench;
