import { describe, expect, it } from "vitest";
import { TidemarkError } from "../../src/core/errors.js";
import { deployJobData, refsJobData } from "../../src/queue/queues.js";

const SHA = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b";

/** What parsing threw, or undefined. */
function thrown(parse: () => unknown): TidemarkError | undefined {
  try {
    parse();
    return undefined;
  } catch (error) {
    if (error instanceof TidemarkError) return error;
    throw error;
  }
}

describe("job data read back from Redis", () => {
  it("takes the deploy and refs jobs Tidemark queues", () => {
    const deploy = { environment: "staging", trigger: "webhook", requested: { ref: "refs/heads/main", commit: SHA } };
    expect(deployJobData(deploy)).toEqual(deploy);
    const push = { kind: "push", ref: "refs/heads/main", after: SHA, deleted: false, delivery: "d-1" };
    expect(refsJobData(push)).toEqual(push);
    const pull = { kind: "pull-request", number: 7, head: SHA, base: "main", fork: true, delivery: "d-2" };
    expect(refsJobData(pull)).toEqual(pull);
    expect(refsJobData({ kind: "poll" })).toEqual({ kind: "poll" });
  });

  it("refuses malformed deploy job data with JOB_DATA_INVALID, naming each field", () => {
    const error = thrown(() => deployJobData({ environment: "staging", trigger: "push", requested: { ref: "refs/heads/main" } }));
    expect(error?.code).toBe("JOB_DATA_INVALID");
    expect(error?.message).toMatch(/^a deploy job's data in Redis is malformed: /);
    expect(error?.message).toContain("trigger: ");
    expect(error?.message).toContain("requested.commit: ");
  });

  it("refuses malformed refs job data with JOB_DATA_INVALID", () => {
    expect(thrown(() => refsJobData({ kind: "push", ref: "refs/heads/main", after: SHA, delivery: "d-1" }))?.message).toContain(
      "deleted: ",
    );
    expect(thrown(() => refsJobData({ kind: "tag" }))?.code).toBe("JOB_DATA_INVALID");
    expect(thrown(() => refsJobData(null))?.code).toBe("JOB_DATA_INVALID");
  });
});
