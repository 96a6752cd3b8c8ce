import { spawn } from "node:child_process";
import type { IncomingMessage, ServerResponse } from "node:http";

/**
 * Smart HTTP by the book: `git http-backend` as a CGI program, so clone,
 * fetch and push behave exactly as against a real git server.
 */
export function serveGit(
  request: IncomingMessage,
  response: ServerResponse,
  options: { projectRoot: string; pathInfo: string; query: string; remoteUser: string; controlUrl: string },
): void {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    GIT_PROJECT_ROOT: options.projectRoot,
    GIT_HTTP_EXPORT_ALL: "1",
    GIT_HTTP_MAX_REQUEST_BUFFER: "100M",
    PATH_INFO: options.pathInfo,
    QUERY_STRING: options.query,
    REQUEST_METHOD: request.method ?? "GET",
    CONTENT_TYPE: request.headers["content-type"] ?? "",
    REMOTE_USER: options.remoteUser,
    REMOTE_ADDR: request.socket.remoteAddress ?? "",
    GATEWAY_INTERFACE: "CGI/1.1",
    SERVER_PROTOCOL: "HTTP/1.1",
    TIDEMARK_FORGE_CONTROL: options.controlUrl,
  };
  if (request.headers["content-length"]) env.CONTENT_LENGTH = request.headers["content-length"];
  if (request.headers["content-encoding"]) env.HTTP_CONTENT_ENCODING = request.headers["content-encoding"];
  if (typeof request.headers["git-protocol"] === "string") env.GIT_PROTOCOL = request.headers["git-protocol"];

  const cgi = spawn("git", ["http-backend"], { env, stdio: ["pipe", "pipe", "pipe"] });
  request.pipe(cgi.stdin);
  const stderr: Buffer[] = [];
  cgi.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));

  let head = Buffer.alloc(0);
  let headersSent = false;
  cgi.stdout.on("data", (chunk: Buffer) => {
    if (headersSent) {
      response.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf("\r\n\r\n");
    if (end < 0) return;
    headersSent = true;
    let status = 200;
    for (const line of head.subarray(0, end).toString("latin1").split("\r\n")) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === "status") status = Number.parseInt(value, 10);
      else response.setHeader(name, value);
    }
    response.writeHead(status);
    response.write(head.subarray(end + 4));
  });
  cgi.on("close", (code) => {
    if (!headersSent) {
      response.writeHead(500, { "content-type": "text/plain" });
      response.end(`git http-backend exited ${code}: ${Buffer.concat(stderr).toString()}`);
    } else {
      response.end();
    }
  });
}
