import type { IncomingMessage, ServerResponse } from "node:http";
import { UNDECODABLE, type Apps, type Credential, type Installation } from "./apps.js";
import { Faults } from "./faults.js";
import { readBody } from "./read-body.js";
import { isoTime, ownerId, userObject, webhookRepository, type Urls } from "./github-objects.js";
import { OpenApiRouter, type RouteMatch } from "./openapi-router.js";
import type { Pulls } from "./pulls.js";
import { resolveCommit, type ForgeRepo, type Repos } from "./repos.js";
import type { Schemas } from "./schemas.js";

export interface ApiRequest {
  method: string;
  path: string;
  operationId: string | null;
  status: number;
  body: unknown;
  /** The credential the request carried, as the stand-in recognised it: "none" for no header, an unknown or expired token, a refused JWT. */
  auth: Credential["kind"];
  at: number;
}

/** A request GitHub would refuse, or an answer of the stand-in that breaks GitHub's own description. */
export interface Violation {
  method: string;
  path: string;
  problems: string[];
}

type DeploymentRecord = Record<string, unknown> & {
  id: number;
  sha: string;
  url: string;
  environment: string;
  transient_environment: boolean;
  statuses: Array<Record<string, unknown> & { state: string }>;
};

interface Answer {
  status: number;
  body: unknown;
}

type Handler = (repo: ForgeRepo, match: RouteMatch, query: URLSearchParams, body: Record<string, unknown>) => Promise<Answer> | Answer;
/** An operation GitHub authenticates with an app's JWT; the JWT speaks for the app's installation. */
type AppHandler = (installation: Installation, match: RouteMatch) => Answer;

const DOCS = "https://docs.github.com/rest";

/**
 * The GitHub REST stand-in: every request is checked against GitHub's OpenAPI
 * description, answered as GitHub answers (401, 404, 422 with its messages),
 * and recorded. The operations Tidemark uses are implemented with GitHub's
 * semantics (commit statuses, deployments and their statuses, pull requests,
 * GitHub App installation tokens).
 */
export class GitHubApi {
  readonly requests: ApiRequest[] = [];
  readonly violations: Violation[] = [];
  readonly faults = new Faults();
  private readonly router: OpenApiRouter;
  private readonly statuses = new Map<
    string,
    Array<Record<string, unknown> & { sha: string; context: string; state: string; id: number }>
  >();
  private readonly deployments = new Map<string, DeploymentRecord[]>();
  private nextId = 1;

  constructor(
    schemas: Schemas,
    private readonly repos: Repos,
    private readonly urls: Urls,
    private readonly token: string,
    private readonly apps: Apps,
    private readonly pulls: Pulls,
  ) {
    this.router = new OpenApiRouter(schemas);
  }

  async handle(request: IncomingMessage, response: ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    const method = request.method ?? "GET";
    const raw = await readBody(request);
    let body: unknown;
    const answer = await this.answer(method, path, query, request.headers.authorization, raw, (parsed) => (body = parsed));
    this.requests.push({ method, path, operationId: answer.operationId, status: answer.status, body, auth: answer.auth, at: Date.now() });
    const remaining = String(Math.max(0, 5000 - this.requests.length));
    response.writeHead(answer.status, {
      "content-type": "application/json; charset=utf-8",
      "x-github-media-type": "github.v3; format=json",
      "x-ratelimit-limit": "5000",
      "x-ratelimit-remaining": remaining,
      "x-ratelimit-used": String(this.requests.length),
      "x-ratelimit-reset": String(Math.ceil(Date.now() / 1000) + 3600),
      "x-ratelimit-resource": "core",
      "x-github-request-id": `F0RGE:${this.requests.length.toString(16).toUpperCase()}`,
      ...answer.headers,
    });
    response.end(answer.body === undefined ? "" : JSON.stringify(answer.body));
  }

  private async answer(
    method: string,
    path: string,
    query: URLSearchParams,
    authorization: string | undefined,
    raw: Buffer,
    record: (body: unknown) => void,
  ): Promise<Answer & { operationId: string | null; auth: Credential["kind"]; headers?: Record<string, string> }> {
    const credential = this.apps.identify(authorization, this.token);
    const auth = credential.kind;
    const fault = await this.faults.take(path, raw.toString("utf8"));
    if (fault) return { ...fault, operationId: null, auth };
    const match = this.router.match(method, path);
    if (credential.kind === "none") {
      // An app's own operations speak of JWTs, whatever was wrong with the credentials.
      const message = credential.jwtProblem ?? (match && this.appHandlers[match.operation.operationId] ? UNDECODABLE : "Bad credentials");
      return { ...unauthorized(message), operationId: null, auth };
    }
    if (!match) {
      this.violations.push({ method, path, problems: ["GitHub has no such endpoint"] });
      return { ...notFound(), operationId: null, auth };
    }
    const operationId = match.operation.operationId;
    let body: unknown;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch {
        this.violations.push({ method, path, problems: ["body is not JSON"] });
        return { status: 400, body: { message: "Problems parsing JSON", documentation_url: DOCS, status: "400" }, operationId, auth };
      }
    }
    record(body);
    const problems = this.router.validateRequest(match, query, body, raw.length > 0);
    if (problems.length > 0) {
      this.violations.push({ method, path, problems });
      return {
        status: 422,
        body: { message: `Invalid request.\n\n${problems.join("\n")}`, documentation_url: DOCS, status: "422" },
        operationId,
        auth,
      };
    }
    const answer = await this.dispatch(credential, match, query, (body ?? {}) as Record<string, unknown>);
    if (!answer) {
      this.violations.push({
        method,
        path,
        problems: [`the stand-in does not implement ${operationId}: add it to test/bed/forge/github-api.ts`],
      });
      return { ...notFound(), operationId, auth };
    }
    const drift = this.router.validateResponse(match, answer.status, answer.body);
    if (drift.length > 0)
      this.violations.push({ method, path, problems: drift.map((problem) => `stand-in answer breaks GitHub's description: ${problem}`) });
    return { ...answer, operationId, auth };
  }

  /** Hands the request to the operation's handler; undefined when the stand-in does not implement it. */
  private async dispatch(
    credential: Exclude<Credential, { kind: "none" }>,
    match: RouteMatch,
    query: URLSearchParams,
    body: Record<string, unknown>,
  ): Promise<Answer | undefined> {
    const operationId = match.operation.operationId;
    const appHandler = this.appHandlers[operationId];
    if (appHandler) return credential.kind === "jwt" ? appHandler(credential.installation, match) : unauthorized(UNDECODABLE);
    const repo = this.repos.get(match.params.owner ?? "", match.params.repo ?? "");
    // An installation token reaches only the repositories the app is installed on; GitHub hides the others.
    if (!repo || (credential.kind === "installation" && credential.installation.repo !== repo)) return notFound();
    const handler = this.handlers[operationId];
    if (!handler) return undefined;
    // A JWT speaks for the app itself, which owns no repositories: their operations want an installation token.
    if (credential.kind === "jwt")
      return { status: 403, body: { message: "Resource not accessible by integration", documentation_url: DOCS, status: "403" } };
    return handler(repo, match, query, body);
  }

  private readonly appHandlers: Record<string, AppHandler> = {
    "apps/create-installation-access-token": (installation, match) =>
      Number(match.params.installation_id) === installation.id ? { status: 201, body: this.apps.issueToken(installation) } : notFound(),
    "apps/get-repo-installation": (installation, match) =>
      `${match.params.owner}/${match.params.repo}` === installation.repo.fullName
        ? { status: 200, body: this.apps.installationObject(installation) }
        : notFound(),
  };

  private readonly handlers: Record<string, Handler> = {
    "repos/get": (repo) => ({ status: 200, body: this.restRepository(repo) }),
    "pulls/get": (repo, match) => {
      const pull = this.pulls.get(repo, Number(match.params.pull_number));
      return pull ? { status: 200, body: this.pulls.object(pull) } : notFound();
    },
    "repos/create-commit-status": async (repo, match, _query, body) => {
      const sha = await resolveCommit(repo, match.params.sha ?? "");
      if (!sha || sha !== match.params.sha) return unprocessable(`No commit found for SHA: ${match.params.sha}`);
      if (typeof body.description === "string" && body.description.length > 140) {
        return {
          status: 422,
          body: {
            message: "Validation Failed",
            errors: [
              { resource: "Status", code: "custom", field: "description", message: "description is too long (maximum is 140 characters)" },
            ],
            documentation_url: DOCS,
            status: "422",
          },
        };
      }
      const context = typeof body.context === "string" ? body.context : "default";
      const list = this.listOf(this.statuses, repo);
      if (list.filter((status) => status.sha === sha && status.context.toLowerCase() === context.toLowerCase()).length >= 1000) {
        return unprocessable("This SHA and context has reached the maximum number of statuses.");
      }
      const id = this.nextId++;
      const now = timestamp();
      const status = {
        sha,
        url: `${this.urls.api}/repos/${repo.fullName}/statuses/${sha}`,
        avatar_url: `${this.urls.web}/avatars/u/1`,
        id,
        node_id: Buffer.from(`011:StatusContext${id}`).toString("base64"),
        state: String(body.state),
        description: (body.description as string | null | undefined) ?? null,
        target_url: (body.target_url as string | null | undefined) ?? null,
        context,
        created_at: now,
        updated_at: now,
        creator: userObject(this.urls, "tidemark-bot", 1),
      };
      list.unshift(status);
      return { status: 201, body: omit(status, "sha") };
    },
    "repos/list-commit-statuses-for-ref": async (repo, match, query) => {
      const sha = await resolveCommit(repo, match.params.ref ?? "");
      const found = sha ? this.listOf(this.statuses, repo).filter((status) => status.sha === sha) : [];
      return { status: 200, body: page(found, query).map((status) => omit(status, "sha")) };
    },
    "repos/get-combined-status-for-ref": async (repo, match, query) => {
      const sha = await resolveCommit(repo, match.params.ref ?? "");
      if (!sha)
        return { status: 404, body: { message: `No commit found for SHA: ${match.params.ref}`, documentation_url: DOCS, status: "404" } };
      const latest = latestPerContext(this.listOf(this.statuses, repo).filter((status) => status.sha === sha));
      const state =
        latest.length === 0
          ? "pending"
          : latest.some((s) => s.state === "error" || s.state === "failure")
            ? "failure"
            : latest.some((s) => s.state === "pending")
              ? "pending"
              : "success";
      const statuses = page(latest, query).map(({ creator: _creator, sha: _sha, ...simple }) => simple);
      return {
        status: 200,
        body: {
          state,
          statuses,
          sha,
          total_count: latest.length,
          repository: this.minimalRepository(repo),
          commit_url: `${this.urls.api}/repos/${repo.fullName}/commits/${sha}`,
          url: `${this.urls.api}/repos/${repo.fullName}/commits/${sha}/status`,
        },
      };
    },
    "repos/create-deployment": async (repo, _match, _query, body) => {
      const ref = String(body.ref);
      const sha = await resolveCommit(repo, ref);
      if (!sha) return unprocessable(`No ref found for: ${ref}`);
      // GitHub refuses a deployment whose commit statuses are not all green, unless required_contexts says otherwise.
      const latest = latestPerContext(this.listOf(this.statuses, repo).filter((status) => status.sha === sha));
      const required = Array.isArray(body.required_contexts)
        ? (body.required_contexts as string[])
        : latest.map((status) => status.context);
      const unmet = required.filter((context) => latest.find((status) => status.context === context)?.state !== "success");
      if (unmet.length > 0) {
        return {
          status: 409,
          body: {
            message: `Conflict: Commit status checks failed for ${ref}.`,
            errors: unmet.map((context) => ({
              contexts: [{ context, state: latest.find((s) => s.context === context)?.state ?? "missing" }],
              resource: "Deployment",
              field: "required_contexts",
            })),
            documentation_url: DOCS,
            status: "409",
          },
        };
      }
      const id = this.nextId++;
      const now = timestamp();
      const url = `${this.urls.api}/repos/${repo.fullName}/deployments/${id}`;
      const deployment = {
        url,
        id,
        node_id: Buffer.from(`010:Deployment${id}`).toString("base64"),
        sha,
        ref,
        task: typeof body.task === "string" ? body.task : "deploy",
        payload: (body.payload as object | string | undefined) ?? {},
        original_environment: typeof body.environment === "string" ? body.environment : "production",
        environment: typeof body.environment === "string" ? body.environment : "production",
        description: (body.description as string | null | undefined) ?? null,
        creator: userObject(this.urls, "tidemark-bot", 1),
        created_at: now,
        updated_at: now,
        statuses_url: `${url}/statuses`,
        repository_url: `${this.urls.api}/repos/${repo.fullName}`,
        transient_environment: body.transient_environment === true,
        production_environment:
          body.production_environment === true ||
          (body.production_environment === undefined && (body.environment ?? "production") === "production"),
        statuses: [] as Array<Record<string, unknown> & { state: string }>,
      };
      this.listOf(this.deployments, repo).unshift(deployment);
      return { status: 201, body: omit(deployment, "statuses") };
    },
    "repos/list-deployments": (repo, _match, query) => {
      const found = this.listOf(this.deployments, repo).filter((d) =>
        ["sha", "ref", "task", "environment"].every((key) => !query.has(key) || d[key] === query.get(key)),
      );
      return { status: 200, body: page(found, query).map((d) => omit(d, "statuses")) };
    },
    "repos/get-deployment": (repo, match) => {
      const deployment = this.listOf(this.deployments, repo).find((d) => d.id === Number(match.params.deployment_id));
      return deployment ? { status: 200, body: omit(deployment, "statuses") } : notFound();
    },
    "repos/create-deployment-status": (repo, match, _query, body) => {
      const all = this.listOf(this.deployments, repo);
      const deployment = all.find((d) => d.id === Number(match.params.deployment_id));
      if (!deployment) return notFound();
      const status = this.deploymentStatus(repo, deployment, body);
      deployment.statuses.unshift(status);
      // auto_inactive (default true): a successful deployment retires the earlier ones of its environment.
      if (status.state === "success" && body.auto_inactive !== false) {
        for (const earlier of all) {
          if (
            earlier !== deployment &&
            earlier.environment === deployment.environment &&
            !earlier.transient_environment &&
            earlier.statuses[0]?.state === "success"
          ) {
            earlier.statuses.unshift(
              this.deploymentStatus(repo, earlier, { state: "inactive", description: `superseded by deployment ${deployment.id}` }),
            );
          }
        }
      }
      return { status: 201, body: status };
    },
    "repos/list-deployment-statuses": (repo, match, query) => {
      const deployment = this.listOf(this.deployments, repo).find((d) => d.id === Number(match.params.deployment_id));
      return deployment ? { status: 200, body: page(deployment.statuses, query) } : notFound();
    },
  };

  private deploymentStatus(repo: ForgeRepo, deployment: DeploymentRecord, body: Record<string, unknown>) {
    const id = this.nextId++;
    const now = timestamp();
    return {
      url: `${deployment.url}/statuses/${id}`,
      id,
      node_id: Buffer.from(`016:DeploymentStatus${id}`).toString("base64"),
      state: String(body.state),
      creator: userObject(this.urls, "tidemark-bot", 1),
      description: typeof body.description === "string" ? body.description : "",
      environment: typeof body.environment === "string" ? body.environment : deployment.environment,
      target_url: typeof body.target_url === "string" ? body.target_url : "",
      ...(typeof body.log_url === "string" || typeof body.target_url === "string"
        ? { log_url: (body.log_url ?? body.target_url) as string }
        : {}),
      ...(typeof body.environment_url === "string" ? { environment_url: body.environment_url } : {}),
      created_at: now,
      updated_at: now,
      deployment_url: deployment.url,
      repository_url: `${this.urls.api}/repos/${repo.fullName}`,
    };
  }

  private listOf<T>(map: Map<string, T[]>, repo: ForgeRepo): T[] {
    let list = map.get(repo.fullName);
    if (!list) map.set(repo.fullName, (list = []));
    return list;
  }

  private minimalRepository(repo: ForgeRepo) {
    const {
      created_at: _c,
      updated_at: _u,
      pushed_at: _p,
      stargazers: _s,
      master_branch: _m,
      custom_properties: _cp,
      ...rest
    } = webhookRepository(this.urls, repo, 0);
    return rest;
  }

  private restRepository(repo: ForgeRepo) {
    return {
      ...this.minimalRepository(repo),
      created_at: isoTime(repo.createdAt),
      updated_at: isoTime(repo.createdAt),
      pushed_at: isoTime(repo.createdAt),
      owner: userObject(this.urls, repo.owner, ownerId(repo.owner)),
      permissions: { admin: false, maintain: false, push: true, triage: true, pull: true },
      network_count: 0,
      subscribers_count: 0,
    };
  }
}

function latestPerContext<T extends { context: string }>(statuses: T[]): T[] {
  const seen = new Set<string>();
  return statuses.filter((status) => !seen.has(status.context.toLowerCase()) && seen.add(status.context.toLowerCase()));
}

function page<T>(items: T[], query: URLSearchParams): T[] {
  const perPage = Math.min(100, Number(query.get("per_page") ?? 30));
  const pageNumber = Number(query.get("page") ?? 1);
  return items.slice((pageNumber - 1) * perPage, pageNumber * perPage);
}

function omit<T extends object, K extends keyof T>(value: T, key: K): Omit<T, K> {
  const { [key]: _omitted, ...rest } = value;
  return rest;
}

function unprocessable(message: string): Answer {
  return { status: 422, body: { message, documentation_url: DOCS, status: "422" } };
}

function unauthorized(message: string): Answer {
  return { status: 401, body: { message, documentation_url: DOCS, status: "401" } };
}

function notFound(): Answer {
  return { status: 404, body: { message: "Not Found", documentation_url: DOCS, status: "404" } };
}

function timestamp(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}
