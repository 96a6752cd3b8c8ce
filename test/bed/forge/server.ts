import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Apps } from "./apps.js";
import { GitHubApi } from "./github-api.js";
import { serveGit } from "./git-http.js";
import { Pulls, type PullAction, type PullEventRequest } from "./pulls.js";
import { buildPushPayload, parseUpdates } from "./push-payload.js";
import { Repos } from "./repos.js";
import { Schemas } from "./schemas.js";
import { Webhooks } from "./webhooks.js";
import type { Fault } from "./faults.js";
import { readBody } from "./read-body.js";

export interface ForgeOptions {
  dir: string;
  /** The token that git pushes (as the Basic password) and REST calls (as `token X`) must carry. */
  token: string;
}

/**
 * The local forge: git over smart HTTP at /OWNER/NAME.git, GitHub-format
 * webhooks from a post-receive hook, the REST stand-in at /api/v3, and a
 * control API at /_bed for tests and the testbed CLI.
 */
export async function startForge(options: ForgeOptions, port = 0): Promise<{ server: Server; port: number }> {
  const schemas = new Schemas();
  const repos = new Repos(`${options.dir}/repos`);
  const webhooks = new Webhooks(schemas);
  let base = "";
  const urls = {
    get web() {
      return base;
    },
    get api() {
      return `${base}/api/v3`;
    },
  };
  const apps = new Apps(urls);
  const pulls = new Pulls(urls, repos);
  const api = new GitHubApi(schemas, repos, urls, options.token, apps, pulls);
  const pending = new Set<Promise<unknown>>();
  let gitAvailable = true;
  /** Ref advertisements for fetches (`info/refs?service=git-upload-pack`), per repository: how many fetches a client made. */
  const fetches = new Map<string, number>();

  const control: Record<string, (body: Record<string, unknown>) => unknown> = {
    "GET /_bed/health": () => ({ ok: true }),
    "POST /_bed/repos": async (body) => {
      const repo = await repos.create(String(body.owner), String(body.name), {
        defaultBranch: body.defaultBranch as string | undefined,
        private: body.private === true,
      });
      return { ...repo, cloneUrl: `${base}/${repo.fullName}.git` };
    },
    "POST /_bed/hooks": (body) =>
      webhooks.add(String(body.repo), { url: String(body.url), secret: String(body.secret), events: body.events as string[] | undefined }),
    "GET /_bed/deliveries": async () => {
      await Promise.all(pending);
      return webhooks.deliveries;
    },
    "POST /_bed/redeliver": (body) => webhooks.redeliver(String(body.guid)),
    "POST /_bed/post-receive": async (body) => {
      const repo = repos.byGitDir(String(body.gitDir));
      if (!repo) throw new Error(`post-receive from unknown repository ${String(body.gitDir)}`);
      const payloads = [];
      for (const update of parseUpdates(body.updates as string[]))
        payloads.push(await buildPushPayload(urls, repo, update, String(body.pusher)));
      // A payload GitHub's schema refuses fails the push itself, loudly.
      for (const payload of payloads) webhooks.check("push", payload);
      // GitHub sends webhooks after the push has completed, one delivery per ref, in order.
      const delivery = (async () => {
        for (const payload of payloads) await webhooks.dispatch(repo.fullName, "push", payload);
      })();
      pending.add(delivery);
      void delivery.finally(() => pending.delete(delivery));
      return { payloads: payloads.length };
    },
    "POST /_bed/pulls": async (body) => {
      const { pull, payload } = await pulls.apply(pullEventRequest(body));
      const deliveries = await webhooks.dispatch(pull.base.fullName, "pull_request", payload);
      return { number: pull.number, headSha: pull.headSha, deliveries };
    },
    "POST /_bed/apps": (body) => apps.create(repos.named(String(body.repo))),
    "GET /_bed/api/requests": () => api.requests,
    "GET /_bed/api/violations": () => api.violations,
    "POST /_bed/api/violations/drain": () => api.violations.splice(0),
    "PUT /_bed/api/faults": (body) => {
      api.faults.set((body.faults ?? []) as Fault[]);
      return { ok: true };
    },
    "GET /_bed/git/fetches": () => Object.fromEntries(fetches),
    "PUT /_bed/git": (body) => {
      gitAvailable = body.available !== false;
      return { available: gitAvailable };
    },
  };

  const server = createServer((request, response) => {
    void route(request, response).catch((error: unknown) => {
      if (!response.headersSent) response.writeHead(500, { "content-type": "text/plain" });
      response.end(error instanceof Error ? error.stack : String(error));
    });
  });

  async function route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", base);
    const path = url.pathname;
    if (path.startsWith("/_bed/")) {
      const handler = control[`${request.method} ${path}`];
      if (!handler) return send(response, 404, { message: `no control endpoint ${request.method} ${path}` });
      const raw = await readBody(request);
      return send(response, 200, await handler(raw.length > 0 ? (JSON.parse(raw.toString()) as Record<string, unknown>) : {}));
    }
    if (path.startsWith("/api/v3/")) return api.handle(request, response, path.slice("/api/v3".length), url.searchParams);
    const gitPath = /^\/([^/]+)\/([^/]+)\.git(\/.*)$/.exec(path);
    if (gitPath) {
      const repo = repos.get(gitPath[1] ?? "", gitPath[2] ?? "");
      if (!repo) return send(response, 404, { message: "Repository not found." });
      if (!gitAvailable) return send(response, 503, { message: "the forge is down (test fault)" });
      const pushing = url.searchParams.get("service") === "git-receive-pack" || path.endsWith("/git-receive-pack");
      if (url.searchParams.get("service") === "git-upload-pack") fetches.set(repo.fullName, (fetches.get(repo.fullName) ?? 0) + 1);
      const user = basicUser(request, options.token);
      if ((pushing || repo.private) && user === undefined) {
        response.writeHead(401, { "www-authenticate": 'Basic realm="tidemark forge"', "content-type": "text/plain" });
        return void response.end("Authentication required\n");
      }
      return serveGit(request, response, {
        projectRoot: repos.root,
        pathInfo: path,
        query: url.search.slice(1),
        remoteUser: user ?? "",
        controlUrl: base,
      });
    }
    send(response, 404, { message: "Not Found" });
  }

  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { server, port: (server.address() as AddressInfo).port };
}

function pullEventRequest(body: Record<string, unknown>): PullEventRequest {
  const text = (key: string) => {
    const value = body[key];
    return typeof value === "string" ? value : undefined;
  };
  return {
    repo: String(body.repo),
    action: (text("action") ?? "opened") as PullAction,
    number: body.number === undefined ? undefined : Number(body.number),
    base: text("base"),
    head: text("head"),
    headRepo: text("headRepo"),
    title: text("title"),
  };
}

function basicUser(request: IncomingMessage, token: string): string | undefined {
  const encoded = /^Basic (.+)$/i.exec(request.headers.authorization ?? "")?.[1];
  if (!encoded) return undefined;
  const decoded = Buffer.from(encoded, "base64").toString();
  const colon = decoded.indexOf(":");
  return decoded.slice(colon + 1) === token ? decoded.slice(0, colon) || "git" : undefined;
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify(body ?? null));
}
