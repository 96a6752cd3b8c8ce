import { Octokit } from "@octokit/rest";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import { WorkRepo } from "../bed/work-repo.js";

// The failures here are on purpose; Octokit need not log them.
const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

describe("the GitHub REST stand-in", () => {
  let bed: TestBed;
  let octokit: Octokit;
  let sha: string;
  const repo = { owner: "acme", repo: "fleet" };

  beforeAll(async () => {
    bed = await TestBed.up({ forge: true });
    octokit = new Octokit({ baseUrl: bed.forge!.apiUrl, auth: bed.forge!.token, request: { retries: 0 }, log: quiet });
    const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    sha = await work.commit({ "tidemark.yaml": "environments: {}\n" });
    await work.push("main");
    work.remove();
  });

  afterEach(async () => {
    // Every request a test did not mean to be invalid must have matched GitHub's description.
    expect(await bed.forge!.violations()).toEqual([]);
  });

  afterAll(async () => {
    await bed?.down();
  });

  it("records a commit status and lists it back, as GitHub does", async () => {
    const created = await octokit.repos.createCommitStatus({ ...repo, sha, state: "success", context: "tidemark/staging", description: "deployed to 3/3 hosts", target_url: "http://127.0.0.1:1/deployments/d-1" });
    expect(created.status).toBe(201);
    const listed = await octokit.repos.listCommitStatusesForRef({ ...repo, ref: "main" });
    expect(listed.data.map((s) => [s.context, s.state, s.description])).toEqual([["tidemark/staging", "success", "deployed to 3/3 hosts"]]);
    const combined = await octokit.repos.getCombinedStatusForRef({ ...repo, ref: sha });
    expect(combined.data.state).toBe("success");
  });

  it("answers an invalid status with 422 and records the violation", async () => {
    await expect(octokit.request("POST /repos/{owner}/{repo}/statuses/{sha}", { ...repo, sha, state: "deployed" as never })).rejects.toMatchObject({ status: 422 });
    const violations = await bed.forge!.drainViolations();
    expect(violations).toHaveLength(1);
    expect(violations[0]!.problems.join()).toMatch(/state must be equal to one of the allowed values/);
  });

  it("applies GitHub's own rules beyond the schema: 140 characters, known commits", async () => {
    await expect(octokit.repos.createCommitStatus({ ...repo, sha, state: "failure", description: "x".repeat(141) })).rejects.toMatchObject({ status: 422 });
    await expect(octokit.repos.createCommitStatus({ ...repo, sha: "f".repeat(40), state: "pending" })).rejects.toMatchObject({ status: 422 });
  });

  it("refuses a wrong token with 401", async () => {
    const stranger = new Octokit({ baseUrl: bed.forge!.apiUrl, auth: "ghp_wrong", request: { retries: 0 }, log: quiet });
    await expect(stranger.repos.listCommitStatusesForRef({ ...repo, ref: sha })).rejects.toMatchObject({ status: 401 });
  });

  it("creates deployments with statuses; a later success marks the earlier one inactive", async () => {
    const first = await octokit.repos.createDeployment({ ...repo, ref: sha, environment: "staging", required_contexts: [], auto_merge: false });
    const firstId = (first.data as { id: number }).id;
    await octokit.repos.createDeploymentStatus({ ...repo, deployment_id: firstId, state: "success" });
    const second = await octokit.repos.createDeployment({ ...repo, ref: sha, environment: "staging", required_contexts: [], auto_merge: false });
    await octokit.repos.createDeploymentStatus({ ...repo, deployment_id: (second.data as { id: number }).id, state: "success" });
    const history = await octokit.repos.listDeploymentStatuses({ ...repo, deployment_id: firstId });
    expect(history.data.map((s) => s.state)).toEqual(["inactive", "success"]);
  });

  it("refuses a deployment while the commit's statuses are not green, unless required_contexts says so", async () => {
    await octokit.repos.createCommitStatus({ ...repo, sha, state: "pending", context: "ci" });
    await expect(octokit.repos.createDeployment({ ...repo, ref: sha, environment: "production" })).rejects.toMatchObject({ status: 409 });
  });

  it("fails on request: 502, and 403 with rate-limit headers", async () => {
    await bed.forge!.setFaults([{ kind: "status", status: 502, times: 1 }, { kind: "rate-limit", resetInSeconds: 30, times: 1 }]);
    await expect(octokit.repos.listCommitStatusesForRef({ ...repo, ref: sha })).rejects.toMatchObject({ status: 502 });
    const limited = await octokit.repos.listCommitStatusesForRef({ ...repo, ref: sha }).catch((error: unknown) => error);
    expect(limited).toMatchObject({ status: 403, response: { headers: { "x-ratelimit-remaining": "0" } } });
    expect((await octokit.repos.listCommitStatusesForRef({ ...repo, ref: sha })).status).toBe(200);
  });
});
