import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Registry } from "prom-client";
import { TidemarkError } from "../core/errors.js";
import { send } from "./respond.js";

export interface Readiness {
  ok: boolean;
  checks: Record<string, string>;
}

export interface HttpRoutes {
  /** `POST /webhooks/github`; absent on a worker. */
  webhook?: (request: IncomingMessage, response: ServerResponse) => Promise<void>;
  ready: () => Promise<Readiness>;
  metrics: Registry;
  /** The operator's page (`serve` only): answers the paths it knows, false for the rest. */
  site?: { serve: (path: string, response: ServerResponse, request: IncomingMessage) => Promise<boolean> };
  onError: (error: unknown) => void;
}

/** The operator's HTTP side: webhooks, health, readiness, metrics and the page. Listens on HOST:PORT (port 0: any free port). */
export async function startHttp(listen: string, routes: HttpRoutes): Promise<{ server: Server; url: string }> {
  const answering = new WeakMap<Socket, ServerResponse>();
  const server = createServer((request, response) => {
    answering.set(request.socket, response);
    void route(request, response).catch((error: unknown) => {
      routes.onError(error);
      if (!response.headersSent) send(response, 500, { message: "internal error; see the operator's log" });
      else response.destroy();
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  // A request HTTP itself cannot read (a bad Content-Length, a header line that is not one, headers too big) got Node's bare 400: say what is wrong, unless an answer is already under way.
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable || error.code === "ECONNRESET" || answering.get(socket as Socket)?.headersSent) return void socket.destroy();
    const status = error.code === "HPE_HEADER_OVERFLOW" ? 431 : error.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
    const body = `${JSON.stringify({ message: `malformed HTTP request: ${error.message} (${error.code ?? "no code"})` })}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });

  async function route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = (request.url ?? "/").split("?")[0] ?? "/";
    if (path === "/webhooks/github" && routes.webhook) {
      if (request.method !== "POST") return send(response, 405, { message: "webhooks are POSTed" }, { allow: "POST" });
      return routes.webhook(request, response);
    }
    if (request.method !== "GET" && request.method !== "HEAD")
      return send(response, 405, { message: `${request.method} is not served here` }, { allow: "GET" });
    if (path === "/healthz") return send(response, 200, "ok\n");
    if (path === "/readyz") {
      const readiness = await routes.ready();
      return send(response, readiness.ok ? 200 : 503, readiness);
    }
    if (path === "/metrics") {
      const text = await routes.metrics.metrics();
      response.writeHead(200, { "content-type": routes.metrics.contentType });
      return void response.end(text);
    }
    if (routes.site && (await routes.site.serve(path, response, request))) return;
    send(response, 404, { message: `nothing at ${path}` });
  }

  const match = /^\[?([^\]]+)\]?:(\d+)$/.exec(listen);
  const [host, port] = [match?.[1] ?? "127.0.0.1", Number(match?.[2] ?? 8080)];
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        new TidemarkError(
          "LISTEN_FAILED",
          `cannot listen on ${listen}: ${error.code ?? error.message}`,
          error.code === "EADDRINUSE"
            ? "another process uses that port: pick another with --listen HOST:PORT"
            : "check --listen (TIDEMARK_LISTEN)",
          { cause: error },
        ),
      ),
    );
    server.listen(port, host, resolve);
  });
  const address = server.address() as AddressInfo;
  return { server, url: `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}` };
}

/** Stops taking connections and ends idle ones; requests in flight finish. */
export function stopHttp(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
