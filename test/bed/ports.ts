import net from "node:net";

/** A loopback port that was free a moment ago; callers retry if they lose the race. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Connects and returns the first bytes the server sends, or undefined if it refuses. */
export function greeting(host: string, port: number, send?: string, timeoutMs = 1_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (value: string | undefined) => {
      socket.destroy();
      resolve(value);
    };
    socket.setTimeout(timeoutMs, () => done(undefined));
    socket.once("error", () => done(undefined));
    socket.once("connect", () => {
      if (send !== undefined) socket.write(send);
    });
    socket.once("data", (data) => done(data.toString()));
  });
}
