import net from "node:net";

/** What the proxy does to the bytes it forwards; applies to data that arrives after it is set. */
export interface Throttle {
  /** Added to every chunk, in each direction (a round trip costs twice this). */
  latencyMs?: number;
  /** Bytes per second in each direction; 0 or absent for no limit. */
  bytesPerSecond?: number;
  /**
   * Also charge each new connection what TCP's handshake costs at this
   * latency: the host sees the client's first bytes 1.5 round trips after the
   * connect, and the client the host's 2 round trips after (as over a real
   * link, where SYN, SYN-ACK and ACK come first). Without it, a connection
   * through the proxy opens at loopback speed and only its data is delayed.
   */
  handshake?: boolean;
}

export type Direction = "up" | "down";

/** Past this many bytes waiting in one direction, the sender is paused: the throttle pushes back like a slow link. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;

/**
 * A TCP proxy on loopback in front of one host, for faults `tc netem` would
 * otherwise make: added latency and a bandwidth limit per direction, and cuts
 * (both sides closed at once) on demand or after a number of bytes. `up` is
 * client to host, `down` host to client. After a cut, new connections are
 * closed as they arrive until `restore()`.
 */
export class TcpProxy {
  private readonly links = new Set<Link>();
  private settings: Required<Throttle> = { latencyMs: 0, bytesPerSecond: 0, handshake: false };
  private blocked = false;
  private trip: { direction: Direction; left: number; done: () => void } | undefined;
  /** Bytes forwarded in each direction since the proxy started. */
  readonly bytes = { up: 0, down: 0 };
  /**
   * Connections accepted, connections closed by a cut or while blocked, and
   * turns: data going down (host to client) after data went up on the same
   * connection since the last down, i.e. the times a client spoke and then
   * heard back. On a request/response protocol each turn is a round trip the
   * client waited for; pipelined requests share one turn; bytes a host sends
   * unasked before the client spoke (a greeting) make none.
   */
  readonly counts = { accepted: 0, cut: 0, turns: 0 };
  /**
   * Hears each turn as it is counted: its connection's number (the count of
   * connections accepted when it was), to tell apart connections that share
   * the proxy; and the bytes the client sent since the host last spoke, what
   * the host answered.
   */
  onTurn: (connection: number, asked: number) => void = () => undefined;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(target: { address: string; port: number }, throttle: Throttle = {}): Promise<TcpProxy> {
    // Each side's end is passed on by its pipe, after the bytes queued before it.
    const server = net.createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port);
    proxy.throttle(throttle);
    server.on("connection", (client) => proxy.accept(client, target));
    return proxy;
  }

  /** Sets latency and bandwidth for what arrives from now on; `{}` forwards at full speed again. */
  throttle(throttle: Throttle): void {
    this.settings = {
      latencyMs: throttle.latencyMs ?? 0,
      bytesPerSecond: throttle.bytesPerSecond ?? 0,
      handshake: throttle.handshake ?? false,
    };
  }

  /** Closes every connection now, both sides, and every new one until `restore()`. Returns how many were cut. */
  cut(): number {
    this.blocked = true;
    this.trip = undefined;
    const open = [...this.links];
    for (const link of open) this.drop(link, true);
    return open.length;
  }

  /**
   * Cuts (as `cut()`) once `bytes` more have gone in `direction` across all
   * connections; the bytes past the mark are never forwarded. Resolves when
   * the cut happened.
   */
  cutAfter(bytes: number, direction: Direction = "up"): Promise<void> {
    return new Promise((resolve) => {
      this.trip = { direction, left: bytes, done: resolve };
    });
  }

  /** Takes connections again (at the current throttle), after a cut. */
  restore(): void {
    this.blocked = false;
    this.trip = undefined;
  }

  get open(): number {
    return this.links.size;
  }

  async close(): Promise<void> {
    for (const link of this.links) this.drop(link, false);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket, target: { address: string; port: number }): void {
    this.counts.accepted++;
    if (this.blocked) {
      this.counts.cut++;
      client.destroy();
      return;
    }
    const host = net.connect({ host: target.address, port: target.port, allowHalfOpen: true });
    client.setNoDelay(true);
    host.setNoDelay(true);
    const link: Link = { client, host, pipes: [], last: "down", asked: 0 };
    // TCP's handshake, as on a link with this latency: SYN, SYN-ACK, then the client's first bytes with its ACK.
    const { latencyMs, handshake } = this.settings;
    const opened = Date.now();
    const notBefore = (direction: Direction) => (handshake ? opened + latencyMs * (direction === "up" ? 2 : 3) : 0);
    const connection = this.counts.accepted;
    const heard = (direction: Direction, bytes: number) => {
      if (direction === "down" && link.last === "up") {
        this.counts.turns++;
        this.onTurn(connection, link.asked);
      }
      link.asked = direction === "up" ? link.asked + bytes : 0;
      link.last = direction;
    };
    link.pipes = [
      new Pipe(this, "up", client, host, notBefore("up"), heard),
      new Pipe(this, "down", host, client, notBefore("down"), heard),
    ];
    this.links.add(link);
    for (const socket of [client, host]) {
      socket.on("error", () => this.drop(link, false));
      socket.on("close", () => {
        if (client.destroyed && host.destroyed) this.drop(link, false);
      });
    }
  }

  /** How many of `length` bytes may pass before an armed cut, and whether they reach its mark. */
  pass(direction: Direction, length: number): { allowed: number; reached: boolean } {
    const trip = this.trip;
    if (!trip || trip.direction !== direction) return { allowed: length, reached: false };
    const allowed = Math.min(length, trip.left);
    trip.left -= allowed;
    return { allowed, reached: trip.left === 0 };
  }

  /** Called by a pipe once the bytes up to the mark have been forwarded. */
  tripped(): void {
    const trip = this.trip;
    if (!trip) return;
    this.cut();
    trip.done();
  }

  /** The throttle in force, for the pipes. */
  get current(): Required<Throttle> {
    return this.settings;
  }

  private drop(link: Link, byCut: boolean): void {
    if (!this.links.delete(link)) return;
    if (byCut) this.counts.cut++;
    for (const pipe of link.pipes) pipe.stop();
    link.client.destroy();
    link.host.destroy();
  }
}

interface Link {
  client: net.Socket;
  host: net.Socket;
  pipes: Pipe[];
  /** The direction data went last, for counting turns. */
  last: Direction;
  /** Bytes up since the last down. */
  asked: number;
}

interface Queued {
  at: number;
  chunk: Buffer;
  /** Run once everything before it has been sent. */
  then?: () => void;
}

/** One direction of one connection: chunks leave in order, each at its arrival time plus the latency, no faster than the bandwidth allows. */
class Pipe {
  private readonly queue: Queued[] = [];
  private queued = 0;
  private busyUntil = 0;
  private lastAt = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly proxy: TcpProxy,
    private readonly direction: Direction,
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    /** No chunk leaves before this time (ms since the epoch) minus the latency: the handshake's share. */
    private readonly notBefore = 0,
    private readonly heard: (direction: Direction, bytes: number) => void = () => undefined,
  ) {
    from.on("data", (chunk: Buffer) => {
      this.heard(direction, chunk.length);
      this.take(chunk);
    });
    from.on("end", () => this.later(() => to.end()));
  }

  stop(): void {
    clearTimeout(this.timer);
    this.queue.length = 0;
  }

  private take(chunk: Buffer): void {
    const { allowed, reached } = this.proxy.pass(this.direction, chunk.length);
    if (allowed > 0) this.schedule(allowed === chunk.length ? chunk : chunk.subarray(0, allowed));
    // The bytes before the mark are delivered first; then both sides close.
    if (reached) this.later(() => this.proxy.tripped());
  }

  private schedule(chunk: Buffer): void {
    const { latencyMs, bytesPerSecond } = this.proxy.current;
    const now = Date.now();
    const start = Math.max(now, this.busyUntil);
    this.busyUntil = bytesPerSecond > 0 ? start + (chunk.length / bytesPerSecond) * 1000 : start;
    const at = Math.max(this.busyUntil + latencyMs, this.lastAt, this.notBefore + latencyMs);
    this.lastAt = at;
    if (at <= now && this.queue.length === 0) {
      this.send(chunk);
      return;
    }
    this.queue.push({ at, chunk });
    this.queued += chunk.length;
    if (this.queued > HIGH_WATER) this.from.pause();
    this.pump();
  }

  private later(then: () => void): void {
    if (this.queue.length === 0) then();
    else this.queue.push({ at: this.lastAt, chunk: Buffer.alloc(0), then });
  }

  private pump(): void {
    if (this.timer || this.queue.length === 0) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        const now = Date.now();
        while (this.queue.length > 0 && this.queue[0]!.at <= now) {
          const item = this.queue.shift()!;
          this.queued -= item.chunk.length;
          if (item.chunk.length > 0) this.send(item.chunk);
          item.then?.();
        }
        if (this.queued < LOW_WATER && this.from.isPaused()) this.from.resume();
        this.pump();
      },
      Math.max(0, this.queue[0]!.at - Date.now()),
    );
  }

  private send(chunk: Buffer): void {
    this.proxy.bytes[this.direction] += chunk.length;
    if (this.to.destroyed) return;
    // A slow receiver pushes back on the sender, as over a real link.
    if (!this.to.write(chunk) && !this.from.isPaused()) {
      this.from.pause();
      this.to.once("drain", () => {
        if (this.queued < LOW_WATER) this.from.resume();
      });
    }
  }
}
