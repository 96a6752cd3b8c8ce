import type { SshSession, SshTarget } from "./ssh-session.js";

/** A connection lent to one host's apply, for one deployment. */
export interface HostLease {
  readonly session: SshSession;
  /** Opened by an earlier deployment and kept: it may have died since (sshd restarted), which is only found out when used. */
  readonly reused: boolean;
  /** Hands the connection back: kept open for the next deployment when `keep` and the pool keeps connections; closed otherwise. */
  release(keep: boolean): void;
}

/** Where host connections come from: opened per deployment (the CLI), or kept warm between deployments (serve, worker). */
export interface HostConnections {
  /**
   * A connection to the target, exclusive until released; the pinned host
   * key is checked on every new connection. `fresh` never reuses one (a
   * reused connection turned out dead).
   */
  lease(target: SshTarget, options?: { fresh?: boolean }): Promise<HostLease>;
  /** Closes idle connections now, and every lent one as it comes back. */
  close(): void;
}
