import { TidemarkError } from "../core/errors.js";
import type { HostConnections, HostLease } from "./connections.js";
import { SshSession, type SshOptions, type SshTarget } from "./ssh-session.js";

/** Refuses a target with no pinned key before any byte goes to it: there is no trust on first use. */
export function requirePinnedKey(target: SshTarget): void {
  if (pinnedKeys(target).length > 0) return;
  throw new TidemarkError(
    "HOST_KEY_UNKNOWN",
    `no pinned host key for ${target.name} (${target.address}:${target.port}); Tidemark never trusts a key on first use`,
    "add hostKey to its inventory entry in tidemark.yaml, or pass --known-hosts with a file that lists it",
  );
}

/**
 * What a kept connection must match to be lent again. The pinned keys are part
 * of it: a connection checked against a key the inventory no longer pins is
 * never reused. Comments and order of the keys do not count.
 */
export function targetIdentity(target: SshTarget): string {
  const keys = pinnedKeys(target)
    .map((line) => line.trim().split(/\s+/).slice(0, 2).join(" "))
    .sort();
  return JSON.stringify([target.name, target.address, target.port, target.user, keys]);
}

/** `tidemark deploy` and `rollback`: a new connection for every lease, closed when it comes back. */
export function openPerLease(options: SshOptions): HostConnections {
  return {
    async lease(target) {
      requirePinnedKey(target);
      const session = await SshSession.connect(target, options);
      return { session, reused: false, release: () => session.close() };
    },
    close: () => undefined,
  };
}

export interface PoolLimits {
  /** How long a connection is kept unused before it is closed; 0 keeps none (every lease connects). */
  idleMs: number;
  /** Kept connections at most: each one is an sshd session on its host. The oldest goes first. */
  maxIdle?: number;
}

interface Kept {
  session: SshSession;
  timer: NodeJS.Timeout;
}

/**
 * `serve` and `worker`: each host's connection is kept open between
 * deployments, so a push pays no SSH handshake. One kept connection per
 * target; a lease takes it for itself, and a lease for a target whose
 * connection is out opens another, kept afterwards only if the slot is free.
 */
export class SshPool implements HostConnections {
  private readonly idle = new Map<string, Kept>();
  private closed = false;

  constructor(
    private readonly options: SshOptions,
    private readonly limits: PoolLimits,
  ) {}

  async lease(target: SshTarget, { fresh = false } = {}): Promise<HostLease> {
    requirePinnedKey(target);
    const identity = targetIdentity(target);
    const kept = fresh ? undefined : this.take(identity);
    if (kept?.alive) return this.lent(identity, kept, true);
    // Closed by the host while it waited (sshd restarted, the host rebooted): keepalive found out.
    kept?.close();
    return this.lent(identity, await SshSession.connect(target, this.options), false);
  }

  close(): void {
    this.closed = true;
    for (const identity of [...this.idle.keys()]) this.take(identity)?.close();
  }

  private lent(identity: string, session: SshSession, reused: boolean): HostLease {
    let released = false;
    return {
      session,
      reused,
      release: (keep) => {
        if (released) return;
        released = true;
        if (keep) this.keep(identity, session);
        else session.close();
      },
    };
  }

  private keep(identity: string, session: SshSession): void {
    if (this.closed || this.limits.idleMs <= 0 || !session.alive || this.idle.has(identity)) {
      session.close();
      return;
    }
    const timer = setTimeout(() => {
      if (this.idle.get(identity)?.session === session) this.take(identity)?.close();
    }, this.limits.idleMs);
    // An idle connection is no reason for the process to stay up.
    timer.unref();
    this.idle.set(identity, { session, timer });
    // A Map iterates in insertion order: the first is the one kept longest.
    const oldest = this.idle.keys().next().value;
    if (this.idle.size > (this.limits.maxIdle ?? MAX_IDLE) && oldest !== undefined) this.take(oldest)?.close();
  }

  private take(identity: string): SshSession | undefined {
    const kept = this.idle.get(identity);
    if (!kept) return undefined;
    clearTimeout(kept.timer);
    this.idle.delete(identity);
    return kept.session;
  }
}

/** Enough for a large fleet, and still bounded: each kept connection holds a socket here and an sshd process on its host. */
const MAX_IDLE = 1000;

const pinnedKeys = (target: SshTarget): readonly string[] => (typeof target.hostKey === "string" ? [target.hostKey] : target.hostKey);
