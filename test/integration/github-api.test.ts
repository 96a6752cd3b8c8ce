import { generateKeyPairSync, sign } from "node:crypto";
import { createAppAuth } from "@octokit/auth-app";
import { Octokit } from "@octokit/rest";
import { beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import { WorkRepo } from "../bed/work-repo.js";
import { integrationLifecycle } from "../helpers/lifecycle.js";

// The failures here are on purpose; Octokit need not log them.
const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** A JWT as a GitHub App signs one (RS256), with whatever claims a test wants. */
function jwt(privateKey: string, claims: Record<string, unknown>): string {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const unsigned = `${encode({ alg: "RS256", typ: "JWT" })}.${encode(claims)}`;
  return `${unsigned}.${sign("RSA-SHA256", Buffer.from(unsigned), privateKey).toString("base64url")}`;
}

describe("the GitHub REST stand-in", () => {
  let bed: TestBed;
  let octokit: Octokit;
  let sha: string;
  const repo = { owner: "acme", repo: "fleet" };

  const owned = integrationLifecycle({ forge: () => bed?.forge });

  beforeAll(async () => {
    bed = owned.own(await TestBed.up({ forge: true }), (it) => it.down());
    octokit = new Octokit({ baseUrl: bed.forge!.apiUrl, auth: bed.forge!.token, request: { retries: 0 }, log: quiet });
    const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    sha = await work.commit({ "tidemark.yaml": "environments: {}\n" });
    await work.push("main");
    work.remove();
  });

  it("records a commit status and lists it back, as GitHub does", async () => {
    const created = await octokit.repos.createCommitStatus({
      ...repo,
      sha,
      state: "success",
      context: "tidemark/staging",
      description: "deployed to 3/3 hosts",
      target_url: "http://127.0.0.1:1/deployments/d-1",
    });
    expect(created.status).toBe(201);
    const listed = await octokit.repos.listCommitStatusesForRef({ ...repo, ref: "main" });
    expect(listed.data.map((s) => [s.context, s.state, s.description])).toEqual([["tidemark/staging", "success", "deployed to 3/3 hosts"]]);
    const combined = await octokit.repos.getCombinedStatusForRef({ ...repo, ref: sha });
    expect(combined.data.state).toBe("success");
  });

  it("answers an invalid status with 422 and records the violation", async () => {
    await expect(
      octokit.request("POST /repos/{owner}/{repo}/statuses/{sha}", { ...repo, sha, state: "deployed" as never }),
    ).rejects.toMatchObject({ status: 422 });
    const violations = await bed.forge!.drainViolations();
    expect(violations).toHaveLength(1);
    expect(violations[0]!.problems.join()).toMatch(/state must be equal to one of the allowed values/);
  });

  it("applies GitHub's own rules beyond the schema: 140 characters, known commits", async () => {
    await expect(octokit.repos.createCommitStatus({ ...repo, sha, state: "failure", description: "x".repeat(141) })).rejects.toMatchObject({
      status: 422,
    });
    await expect(octokit.repos.createCommitStatus({ ...repo, sha: "f".repeat(40), state: "pending" })).rejects.toMatchObject({
      status: 422,
    });
  });

  it("refuses a wrong token with 401", async () => {
    const stranger = new Octokit({ baseUrl: bed.forge!.apiUrl, auth: "ghp_wrong", request: { retries: 0 }, log: quiet });
    await expect(stranger.repos.listCommitStatusesForRef({ ...repo, ref: sha })).rejects.toMatchObject({ status: 401 });
  });

  it("creates deployments with statuses; a later success marks the earlier one inactive", async () => {
    const first = await octokit.repos.createDeployment({
      ...repo,
      ref: sha,
      environment: "staging",
      required_contexts: [],
      auto_merge: false,
    });
    const firstId = (first.data as { id: number }).id;
    await octokit.repos.createDeploymentStatus({ ...repo, deployment_id: firstId, state: "success" });
    const second = await octokit.repos.createDeployment({
      ...repo,
      ref: sha,
      environment: "staging",
      required_contexts: [],
      auto_merge: false,
    });
    await octokit.repos.createDeploymentStatus({ ...repo, deployment_id: (second.data as { id: number }).id, state: "success" });
    const history = await octokit.repos.listDeploymentStatuses({ ...repo, deployment_id: firstId });
    expect(history.data.map((s) => s.state)).toEqual(["inactive", "success"]);
  });

  it("refuses a deployment while the commit's statuses are not green, unless required_contexts says so", async () => {
    await octokit.repos.createCommitStatus({ ...repo, sha, state: "pending", context: "ci" });
    await expect(octokit.repos.createDeployment({ ...repo, ref: sha, environment: "production" })).rejects.toMatchObject({ status: 409 });
  });

  it("fails on request: 502, and 403 with rate-limit headers", async () => {
    await bed.forge!.setFaults([
      { kind: "status", status: 502, times: 1 },
      { kind: "rate-limit", resetInSeconds: 30, times: 1 },
    ]);
    await expect(octokit.repos.listCommitStatusesForRef({ ...repo, ref: sha })).rejects.toMatchObject({ status: 502 });
    const limited = await octokit.repos.listCommitStatusesForRef({ ...repo, ref: sha }).catch((error: unknown) => error);
    expect(limited).toMatchObject({ status: 403, response: { headers: { "x-ratelimit-remaining": "0" } } });
    expect((await octokit.repos.listCommitStatusesForRef({ ...repo, ref: sha })).status).toBe(200);
  });

  describe("GitHub App authentication", () => {
    const now = () => Math.floor(Date.now() / 1000);
    const withJwt = (token: string) => new Octokit({ baseUrl: bed.forge!.apiUrl, auth: token, request: { retries: 0 }, log: quiet });

    it("trades an app's JWT for an installation token with @octokit/auth-app, and posts a status with it", async () => {
      const app = await bed.forge!.createApp(bed.forgeRepo);
      expect(app.privateKey).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/);
      const seen = (await bed.forge!.apiRequests()).length;
      const asApp = new Octokit({
        baseUrl: bed.forge!.apiUrl,
        authStrategy: createAppAuth,
        auth: { appId: app.appId, privateKey: app.privateKey, installationId: app.installationId },
        request: { retries: 0 },
        log: quiet,
      });
      await asApp.repos.createCommitStatus({ ...repo, sha, state: "success", context: "tidemark/app" });
      const installation = await asApp.apps.getRepoInstallation(repo);
      expect(installation.data).toMatchObject({ id: app.installationId, app_id: app.appId, repository_selection: "selected" });
      const requests = (await bed.forge!.apiRequests()).slice(seen);
      expect(requests.map((r) => [r.operationId, r.status, r.auth])).toEqual([
        ["apps/create-installation-access-token", 201, "jwt"],
        ["repos/create-commit-status", 201, "installation"],
        ["apps/get-repo-installation", 200, "jwt"],
      ]);
    });

    it("issues ghs_ tokens for one hour that reach only the installation's repository", async () => {
      const app = await bed.forge!.createApp(bed.forgeRepo);
      await bed.forge!.createRepo("acme", "elsewhere");
      const asApp = new Octokit({
        baseUrl: bed.forge!.apiUrl,
        authStrategy: createAppAuth,
        auth: { appId: app.appId, privateKey: app.privateKey },
        request: { retries: 0 },
        log: quiet,
      });
      const issued = (await asApp.auth({ type: "installation", installationId: app.installationId })) as {
        token: string;
        expiresAt: string;
        permissions: Record<string, string>;
      };
      expect(issued.token).toMatch(/^ghs_[A-Za-z0-9]{36}$/);
      expect(Date.parse(issued.expiresAt) - Date.now()).toBeGreaterThan(3500_000);
      expect(issued.permissions).toEqual({
        statuses: "write",
        deployments: "write",
        contents: "write",
        pull_requests: "read",
        metadata: "read",
      });
      const installed = withJwt(issued.token);
      expect((await installed.repos.get(repo)).status).toBe(200);
      await expect(installed.repos.get({ owner: "acme", repo: "elsewhere" })).rejects.toMatchObject({ status: 404 });
      await expect(withJwt(`ghs_${"x".repeat(36)}`).repos.get(repo)).rejects.toMatchObject({
        status: 401,
        message: expect.stringMatching(/Bad credentials/) as unknown,
      });
    });

    it("refuses the JWTs GitHub refuses, with GitHub's messages", async () => {
      const app = await bed.forge!.createApp(bed.forgeRepo);
      const other = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
      const forged = new Octokit({
        baseUrl: bed.forge!.apiUrl,
        authStrategy: createAppAuth,
        auth: { appId: app.appId, privateKey: other, installationId: app.installationId },
        request: { retries: 0 },
        log: quiet,
      });
      await expect(forged.repos.createCommitStatus({ ...repo, sha, state: "success" })).rejects.toMatchObject({
        status: 401,
        message: expect.stringMatching(/A JSON web token could not be decoded/) as unknown,
      });
      const refusals: Array<[Record<string, unknown>, RegExp]> = [
        [{ iss: app.appId, iat: now() - 30, exp: now() + 3600 }, /'Expiration time' claim \('exp'\) is too far in the future/],
        [{ iss: app.appId, iat: now() - 700, exp: now() - 100 }, /'Expiration time' claim \('exp'\) must be a numeric value/],
        [{ iss: app.appId, iat: now() + 120, exp: now() + 300 }, /'Issued at' claim \('iat'\) must be an Integer/],
        [{ iss: "my-app", iat: now() - 30, exp: now() + 300 }, /'Issuer' claim \('iss'\) must be an Integer/],
      ];
      for (const [claims, message] of refusals) {
        await expect(
          withJwt(jwt(app.privateKey, claims)).apps.createInstallationAccessToken({ installation_id: app.installationId }),
        ).rejects.toMatchObject({ status: 401, message: expect.stringMatching(message) as unknown });
      }
      // iss may be a string of digits, as some libraries send it.
      const valid = withJwt(jwt(app.privateKey, { iss: String(app.appId), iat: now() - 30, exp: now() + 540 }));
      expect((await valid.apps.createInstallationAccessToken({ installation_id: app.installationId })).status).toBe(201);
      await expect(valid.apps.createInstallationAccessToken({ installation_id: app.installationId + 1 })).rejects.toMatchObject({
        status: 404,
      });
      // A JWT is the app's, not an installation's; the forge's token is no JWT.
      await expect(valid.repos.createCommitStatus({ ...repo, sha, state: "success" })).rejects.toMatchObject({ status: 403 });
      await expect(octokit.apps.createInstallationAccessToken({ installation_id: app.installationId })).rejects.toMatchObject({
        status: 401,
        message: expect.stringMatching(/A JSON web token could not be decoded/) as unknown,
      });
    });
  });
});
