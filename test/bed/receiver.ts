import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface Received {
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A plain HTTP endpoint on loopback that records what it is sent (a webhook receiver for tests). */
export class Receiver {
  private constructor(
    private readonly server: Server,
    readonly url: string,
    readonly received: Received[],
  ) {}

  static async start(status = 200): Promise<Receiver> {
    const received: Received[] = [];
    const server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        received.push({ headers: request.headers, body: Buffer.concat(chunks).toString() });
        response.writeHead(status).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return new Receiver(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
