import http from "node:http";
import https from "node:https";
import tls from "node:tls";
import type { Duplex } from "node:stream";
import { splitCredentials } from "../git/credentials.js";
import type { SshSession } from "./ssh-session.js";

/**
 * An HTTP check run "on the host": the request goes through an SSH tunnel
 * from the host's own sshd, so hosts need no curl and the URL's 127.0.0.1 is
 * the host's. Returns what was wrong, or undefined when the status matched.
 */
export async function httpCheck(session: SshSession, url: string, status: number, timeoutMs: number): Promise<string | undefined> {
  const target = new URL(url);
  // A URL is named in outcomes, which are stored and reported: never with credentials in it.
  const shown = splitCredentials(url).url;
  const secure = target.protocol === "https:";
  const port = Number(target.port) || (secure ? 443 : 80);
  const hostname = target.hostname.replace(/^\[|\]$/g, "");
  try {
    const tunnel: Duplex = await session.forward(port, hostname);
    const socket = secure ? tls.connect({ socket: tunnel, servername: hostname }) : tunnel;
    const got = await new Promise<number>((resolve, reject) => {
      const request = (secure ? https : http).request(
        {
          host: hostname,
          port,
          path: `${target.pathname}${target.search}`,
          method: "GET",
          createConnection: () => socket,
          timeout: timeoutMs,
          headers: { "user-agent": "tidemark-check" },
        },
        (response) => {
          response.resume();
          resolve(response.statusCode ?? 0);
        },
      );
      request.on("timeout", () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      request.on("error", reject);
      request.end();
    });
    socket.destroy();
    return got === status ? undefined : `${shown} answered ${got}, expected ${status}`;
  } catch (error) {
    return `${shown}: ${error instanceof Error ? error.message : String(error)}`;
  }
}
