import { describe, expect, it } from "vitest";
import type { HostResult } from "../../src/remote/apply-host.js";
import { runRollout, STOPPED, type RolloutPolicy } from "../../src/rollout/rollout.js";

const policy = (overrides: Partial<RolloutPolicy> = {}): RolloutPolicy => ({
  maxParallel: 10,
  canary: 0,
  maxFailures: 0,
  onFailure: "rollback-host",
  confirmSeconds: 60,
  ...overrides,
});
const hosts = ["h1", "h2", "h3", "h4", "h5"];

/** Applies hosts in a scripted way, recording the order and the peak parallelism. */
function scripted(failing: string[] = []) {
  const started: string[] = [];
  let running = 0;
  let peak = 0;
  const apply = async (host: string): Promise<HostResult> => {
    started.push(host);
    peak = Math.max(peak, ++running);
    await new Promise((resolve) => setImmediate(resolve));
    running--;
    return failing.includes(host)
      ? { host, outcome: "rolled-back", detail: "x.service failed (exit-code)" }
      : { host, outcome: "deployed" };
  };
  return { apply, started, peak: () => peak };
}

describe("rollout policy", () => {
  it("runs at most maxParallel hosts at once", async () => {
    const run = scripted();
    const results = await runRollout(hosts, policy({ maxParallel: 2 }), run.apply, () => Promise.reject(new Error("no undo")));
    expect(results.map((result) => result.outcome)).toEqual(["deployed", "deployed", "deployed", "deployed", "deployed"]);
    expect(run.peak()).toBe(2);
  });

  it("runs canaries first and stops the rest when a canary fails", async () => {
    const run = scripted(["h1"]);
    const results = await runRollout(hosts, policy({ canary: 1, maxFailures: 3 }), run.apply, () => Promise.reject(new Error("no undo")));
    expect(run.started).toEqual(["h1"]);
    expect(results.map((result) => result.outcome)).toEqual(["rolled-back", "skipped", "skipped", "skipped", "skipped"]);
    expect(results[1]!.detail).toContain("a canary host did not succeed");
    expect(results[1]!.skip).toBe("halted");
  });

  it("halts after more than maxFailures failures, leaving hosts not started skipped", async () => {
    const run = scripted(["h1", "h2"]);
    const results = await runRollout(hosts, policy({ maxParallel: 1, maxFailures: 1 }), run.apply, () =>
      Promise.reject(new Error("no undo")),
    );
    expect(results.map((result) => result.outcome)).toEqual(["rolled-back", "rolled-back", "skipped", "skipped", "skipped"]);
    expect(results[2]!.detail).toContain("more than 1 host(s) failed");
    expect(results[2]!.skip).toBe("halted");
  });

  it("with rollback-all, returns the hosts already deployed in this rollout", async () => {
    const run = scripted(["h3"]);
    const undone: string[] = [];
    const results = await runRollout(hosts, policy({ maxParallel: 1, onFailure: "rollback-all" }), run.apply, (host) => {
      undone.push(host);
      return Promise.resolve({ host, outcome: "deployed" });
    });
    expect(undone.sort()).toEqual(["h1", "h2"]);
    expect(results.map((result) => result.outcome)).toEqual(["rolled-back", "rolled-back", "rolled-back", "skipped", "skipped"]);
    expect(results[0]!.detail).toContain("rollback-all");
  });

  it("starts no new host once stopped: the hosts in flight finish, the rest are skipped for the next run, nothing is undone", async () => {
    const stop = new AbortController();
    const run = scripted();
    const apply = async (host: string) => {
      const result = await run.apply(host);
      if (host === "h3") stop.abort();
      return result;
    };
    const results = await runRollout(
      hosts,
      policy({ maxParallel: 1, canary: 1, onFailure: "rollback-all" }),
      apply,
      () => Promise.reject(new Error("no undo")),
      stop.signal,
    );
    expect(results.map((result) => result.outcome)).toEqual(["deployed", "deployed", "deployed", "skipped", "skipped"]);
    expect(results[3]!.detail).toBe(`not started: ${STOPPED}`);
    expect(results[3]!.skip).toBe("stopped");
  });
});
