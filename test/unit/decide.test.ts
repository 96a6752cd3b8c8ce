import { describe, expect, it } from "vitest";
import type { TrackingRule } from "../../src/core/config.js";
import {
  afterRollout,
  decide,
  decideIntake,
  heldBack,
  type DeployState,
  type IntakeState,
  type LastAttempt,
} from "../../src/core/decide.js";

const MAIN: TrackingRule = { branch: "main" };
const VERSIONS: TrackingRule = { tags: "v*", prerelease: false };
const [A, B, C] = ["a".repeat(40), "b".repeat(40), "c".repeat(40)];
const HELD = `held back: ${B.slice(0, 7)} failed on this environment; a new commit or tidemark deploy tries again`;

/** The last attempt: B on main, both hosts deployed; the tests change what they are about. */
const last = (overrides: Partial<LastAttempt> = {}): LastAttempt => ({
  id: "20261122T101010Z-abcdef",
  sourceRef: "refs/heads/main",
  sourceCommit: B,
  hosts: [
    { host: "web01", outcome: "deployed" },
    { host: "web02", outcome: "deployed" },
  ],
  ...overrides,
});

/** staging on main at B, with its history and plan read: B was deployed last, nothing changes, nothing was asked for. */
const state = (overrides: Partial<DeployState> = {}): DeployState => ({
  environment: "staging",
  track: MAIN,
  resolution: { ref: "refs/heads/main", commit: B },
  history: { last: last(), requested: [] },
  plan: { changing: [], desired: ["web01", "web02"], sameTree: true },
  ...overrides,
});

describe("the deploy job's decision", () => {
  it("stays where it is when the rule points nowhere, without reading the history", () => {
    expect(
      decide({ environment: "staging", track: MAIN, resolution: { ref: null, reason: "branch main does not exist in the source repo" } }),
    ).toEqual({
      kind: "stays",
      reason: "branch main does not exist in the source repo; staging stays where it is",
    });
  });

  it("reads the history once the rule points somewhere", () => {
    expect(decide({ environment: "staging", track: MAIN, resolution: { ref: "refs/heads/main", commit: C } })).toEqual({
      kind: "read-history",
      ref: "refs/heads/main",
      commit: C,
    });
  });

  it("holds the commit back while the environment is pinned, without reading the plan", () => {
    const pin = "return to 20261121T090000Z-123456 (1a2b3c4)";
    expect(
      decide(
        state({ resolution: { ref: "refs/heads/main", commit: C }, history: { last: last({ pin }), requested: [C] }, plan: undefined }),
      ),
    ).toEqual({
      kind: "pinned",
      pin,
      commit: C,
      reason: `staging is pinned (${pin}); ${C.slice(0, 7)} waits for tidemark unpin staging`,
    });
  });

  it("never takes a tags: environment back to an older tag than the one deployed last", () => {
    const production = { environment: "production", track: VERSIONS, resolution: { ref: "refs/tags/v1.2.0", commit: A }, plan: undefined };
    expect(decide(state({ ...production, history: { last: last({ sourceRef: "refs/tags/v1.3.0" }), requested: [] } }))).toEqual({
      kind: "older",
      ref: "refs/tags/v1.2.0",
      last: "refs/tags/v1.3.0",
      reason: "refs/tags/v1.2.0 is older than refs/tags/v1.3.0, deployed last; production stays where it is",
    });
  });

  it("reads the plan once neither a pin nor an older ref keeps the environment where it is: a branch goes wherever it points", () => {
    expect(decide(state({ resolution: { ref: "refs/heads/main", commit: A }, plan: undefined }))).toEqual({
      kind: "read-plan",
      ref: "refs/heads/main",
      commit: A,
    });
    expect(decide(state({ history: { last: undefined, requested: [] }, plan: undefined }))).toEqual({
      kind: "read-plan",
      ref: "refs/heads/main",
      commit: B,
    });
  });

  it("deploys a new commit to every host its plan changes, superseding the others asked for before it", () => {
    const decision = decide(
      state({
        resolution: { ref: "refs/heads/main", commit: C },
        history: { last: last(), requested: [A, C] },
        plan: { changing: ["web01", "web02"], desired: ["web01", "web02"], sameTree: false },
      }),
    );
    expect(decision).toEqual({
      kind: "deploy",
      ref: "refs/heads/main",
      commit: C,
      hosts: ["web01", "web02"],
      hold: new Map(),
      superseded: [A],
    });
  });

  it("deploys the first commit of an environment with no history", () => {
    expect(
      decide(state({ history: { last: undefined, requested: [B] }, plan: { changing: ["web01"], desired: ["web01"], sameTree: false } })),
    ).toMatchObject({ kind: "deploy", hosts: ["web01"], superseded: [] });
  });

  it("retries the commit attempted last on the hosts a passing failure left behind, holding back where it failed", () => {
    const previous = last({
      hosts: [
        { host: "web01", outcome: "rolled-back" },
        { host: "web02", outcome: "unreachable" },
        { host: "web03", outcome: "deployed" },
      ],
    });
    const decision = decide(
      state({
        history: { last: previous, requested: [B] },
        plan: { changing: ["web01", "web02"], desired: ["web01", "web02", "web03"], sameTree: true },
      }),
    );
    expect(decision).toEqual({
      kind: "deploy",
      ref: "refs/heads/main",
      commit: B,
      hosts: ["web02"],
      hold: new Map([["web01", HELD]]),
      superseded: [],
    });
  });

  it("records no deployment for a new commit that leaves the environment's tree as it was", () => {
    expect(decide(state({ resolution: { ref: "refs/heads/main", commit: C }, history: { last: last(), requested: [A, C] } }))).toEqual({
      kind: "no-change",
      ref: "refs/heads/main",
      commit: C,
      superseded: [A],
    });
  });

  it("records a new tree that every host already runs (a revert after a host rolled itself back), deploying no host", () => {
    const reverted = state({
      resolution: { ref: "refs/heads/main", commit: C },
      history: { last: last(), requested: [C] },
      plan: { changing: [], desired: ["web01", "web02"], sameTree: false },
    });
    expect(decide(reverted)).toEqual({ kind: "deploy", ref: "refs/heads/main", commit: C, hosts: [], hold: new Map(), superseded: [] });
  });

  it("is up to date when the commit attempted last has no host left to try, and names none finished when none was behind", () => {
    expect(decide(state({ history: { last: last(), requested: [A, B] } }))).toEqual({
      kind: "up-to-date",
      id: last().id,
      ref: "refs/heads/main",
      commit: B,
      finished: [],
      superseded: [A],
    });
  });

  it("is up to date, with the hosts finished since, when another attempt brought the hosts the last one left behind", () => {
    const previous = last({
      hosts: [
        { host: "web01", outcome: "deployed" },
        { host: "web02", outcome: "unreachable" },
        { host: "gone", outcome: "unreachable" },
      ],
    });
    expect(decide(state({ history: { last: previous, requested: [] } }))).toMatchObject({ kind: "up-to-date", finished: ["web02"] });
  });

  it("is up to date, with no host finished, when the only hosts left are held back: the commit is not whole there", () => {
    const previous = last({
      hosts: [
        { host: "web01", outcome: "rolled-back" },
        { host: "web02", outcome: "unreachable" },
      ],
    });
    expect(
      decide(
        state({ history: { last: previous, requested: [] }, plan: { changing: ["web01"], desired: ["web01", "web02"], sameTree: false } }),
      ),
    ).toMatchObject({ kind: "up-to-date", finished: [] });
  });
});

describe("what a rollout leaves to its job", () => {
  it("runs again when a shutdown kept hosts from starting, not when the rollout policy halted them", () => {
    expect(
      afterRollout([
        { host: "web01", outcome: "deployed" },
        { host: "web02", outcome: "skipped", skip: "stopped" },
      ]),
    ).toEqual({ stopped: true, behind: false });
    expect(
      afterRollout([
        { host: "web01", outcome: "rolled-back" },
        { host: "web02", outcome: "skipped", skip: "halted" },
      ]),
    ).toEqual({ stopped: false, behind: false });
  });

  it("has polls ask again when a passing failure left hosts behind, not when the commit failed", () => {
    expect(afterRollout([{ host: "web01", outcome: "unreachable" }])).toEqual({ stopped: false, behind: true });
    expect(afterRollout([{ host: "web01", outcome: "failed" }])).toEqual({ stopped: false, behind: true });
    expect(
      afterRollout([
        { host: "web01", outcome: "rollback-failed" },
        { host: "web02", outcome: "skipped", skip: "held-back" },
      ]),
    ).toEqual({ stopped: false, behind: false });
  });
});

describe("hosts held back", () => {
  it("holds back, on a retry of the same commit, the hosts where it failed and the ones its failure kept from starting; retries the others", () => {
    const sha = "1a2b3c4d5e6f";
    const held = (previous: Parameters<typeof heldBack>[0]) => [...heldBack(previous, sha).keys()];
    expect(
      held([
        { host: "a", outcome: "rolled-back" },
        { host: "b", outcome: "skipped", skip: "halted" },
        { host: "c", outcome: "unreachable" },
        { host: "d", outcome: "skipped", skip: "stopped" },
      ]),
    ).toEqual(["a", "b"]);
    // No host failed for the commit itself: a rollout halted by an unreachable host is retried whole.
    expect(
      held([
        { host: "a", outcome: "unreachable" },
        { host: "b", outcome: "skipped", skip: "halted" },
      ]),
    ).toEqual([]);
    // Held once, held again at the next retry, with why.
    const again = heldBack([{ host: "a", outcome: "rolled-back" }], sha).get("a")!;
    expect(again).toBe("held back: 1a2b3c4 failed on this environment; a new commit or tidemark deploy tries again");
    expect(
      held([
        { host: "a", outcome: "skipped", skip: "held-back" },
        { host: "c", outcome: "failed" },
      ]),
    ).toEqual(["a"]);
  });
});

/** A push of main at C to staging, on main, which asked for B last. */
const intake = (overrides: Partial<IntakeState> = {}): IntakeState => ({
  environment: "staging",
  track: MAIN,
  trigger: { kind: "push", ref: "refs/heads/main", after: C, deleted: false },
  resolution: { ref: "refs/heads/main", commit: C },
  lastRequested: { ref: "refs/heads/main", commit: B },
  retrying: false,
  ...overrides,
});

describe("the intake's decision", () => {
  it("asks for a deployment of a new commit pushed to the tracked ref, and notes the pushed commit", () => {
    expect(decideIntake(intake())).toEqual({ kind: "request", ref: "refs/heads/main", commit: C, again: false, note: C });
  });

  it("ignores a push of a ref the rule does not follow", () => {
    expect(decideIntake(intake({ trigger: { kind: "push", ref: "refs/heads/feature", after: A, deleted: false } }))).toEqual({
      kind: "ignored",
    });
  });

  it("leaves the environment where it is when its ref is deleted", () => {
    const pinned = {
      environment: "pinned",
      track: { tag: "stable" },
      resolution: { ref: null, reason: "tag stable does not exist" },
    } as const;
    expect(
      decideIntake(intake({ ...pinned, trigger: { kind: "push", ref: "refs/tags/stable", after: "0".repeat(40), deleted: true } })),
    ).toEqual({ kind: "stays", reason: "refs/tags/stable was deleted; pinned stays where it is" });
  });

  it("leaves the environment where it is when a poll finds its rule pointing nowhere", () => {
    expect(
      decideIntake(
        intake({ trigger: { kind: "poll" }, resolution: { ref: null, reason: "branch main does not exist in the source repo" } }),
      ),
    ).toEqual({
      kind: "stays",
      reason: "branch main does not exist in the source repo; staging stays where it is",
    });
  });

  it("does not ask again for the commit asked for last", () => {
    expect(decideIntake(intake({ trigger: { kind: "poll" }, resolution: { ref: "refs/heads/main", commit: B } }))).toEqual({
      kind: "current",
      commit: B,
    });
    // A redelivered push: current, and its commit noted (once: a note is kept by commit).
    expect(
      decideIntake(
        intake({
          trigger: { kind: "push", ref: "refs/heads/main", after: B, deleted: false },
          resolution: { ref: "refs/heads/main", commit: B },
        }),
      ),
    ).toEqual({ kind: "current", commit: B, note: B });
  });

  it("asks again at a poll for a commit a pin holds back or hosts are behind on; a push does not", () => {
    const same = { resolution: { ref: "refs/heads/main", commit: B }, retrying: true } as const;
    expect(decideIntake(intake({ ...same, trigger: { kind: "poll" } }))).toEqual({
      kind: "request",
      ref: "refs/heads/main",
      commit: B,
      again: true,
    });
    expect(decideIntake(intake({ ...same, trigger: { kind: "push", ref: "refs/heads/main", after: B, deleted: false } }))).toMatchObject({
      kind: "current",
    });
  });

  it("never takes a tags: environment back to an older tag than the one asked for last", () => {
    const production = {
      environment: "production",
      track: VERSIONS,
      resolution: { ref: "refs/tags/v1.2.0", commit: A },
      lastRequested: { ref: "refs/tags/v1.3.0", commit: B },
    };
    expect(decideIntake(intake({ ...production, trigger: { kind: "poll" } }))).toEqual({
      kind: "older",
      ref: "refs/tags/v1.2.0",
      last: "refs/tags/v1.3.0",
      reason: "refs/tags/v1.2.0 is older than refs/tags/v1.3.0; production stays where it is",
    });
  });

  it("notes a pushed commit only when the rule resolves to the pushed ref", () => {
    // v1.1.0 pushed while v1.3.0 is the newest tag: the rule follows v1.3.0, asked for already.
    const production = {
      environment: "production",
      track: VERSIONS,
      resolution: { ref: "refs/tags/v1.3.0", commit: B },
      lastRequested: { ref: "refs/tags/v1.3.0", commit: B },
    };
    expect(decideIntake(intake({ ...production, trigger: { kind: "push", ref: "refs/tags/v1.1.0", after: A, deleted: false } }))).toEqual({
      kind: "current",
      commit: B,
    });
  });

  it("asks for a deployment at a poll, with nothing to note, of an environment never asked for", () => {
    expect(decideIntake(intake({ trigger: { kind: "poll" }, lastRequested: undefined }))).toEqual({
      kind: "request",
      ref: "refs/heads/main",
      commit: C,
      again: false,
    });
  });
});
