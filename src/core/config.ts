import type { FileEntry } from "./tree.js";

/**
 * What the source repo says, as the core sees it: `tidemark.yaml`, an app's
 * `manifest.json`, and an environment's tree read as hosts and apps. Plain
 * types only; the zod schemas that produce them live in config/ and are
 * checked there to output exactly these types (a compile error if they drift).
 */

/** `tidemark.yaml` at the root of the source repo, parsed and checked. */
export interface SourceConfig {
  environments: Record<string, Environment>;
  /** The inventory: host name → how to reach it. */
  hosts: Record<string, InventoryHost>;
  /** Named sets of hosts, in the order `groups:` lists them: the order their layers apply in. */
  groups?: Record<string, HostGroup>;
  rollout: RolloutPolicy;
  limits: Limits;
  /** Recipients that must no longer open the secret files: people who left, keys replaced (`tidemark secrets check` names the files still encrypted to them). */
  secrets?: { retired: string[] };
}

export interface Environment {
  track: TrackingRule;
  /** A directory inside the source repo: `<tree>/<host>/<app>/...`. */
  tree: string;
  /** The hosts it deploys to (groups named there stand for their hosts); every host with a directory in its tree when absent. */
  hosts?: string[];
  /** Values for templates, under every group's and host's. */
  vars?: Vars;
  /** How the operator watches the hosts for drift (`drift:`); DEFAULT_DRIFT when absent. */
  drift?: DriftPolicy;
}

export interface DriftPolicy {
  /** `warn` reports drift; `heal` redeploys the recorded release too; `off` checks nothing on a schedule. */
  mode: "off" | "warn" | "heal";
  intervalSeconds: number;
  /** Globs of finding paths never reported (`app/path`, a host path, a unit name). */
  ignore: string[];
}

export const DEFAULT_DRIFT: DriftPolicy = { mode: "warn", intervalSeconds: 600, ignore: [] };

/** Values for templates (`vars.NAME`): a more specific level replaces a name whole (environment, then groups, then host). */
export type Vars = Record<string, unknown>;

export interface HostGroup {
  hosts: string[];
  vars?: Vars;
}

/** A branch, a pinned tag, or the newest tag by semver that matches a pattern (pre-releases only when asked; default false). */
export type TrackingRule = { branch: string } | { tag: string } | { tags: string; prerelease: boolean };

export interface InventoryHost {
  address: string;
  /** Default 22. */
  port: number;
  /** Default root. */
  user: string;
  /** An OpenSSH public key line to pin; known_hosts otherwise. */
  hostKey?: string;
  vars?: Vars;
}

export interface RolloutPolicy {
  /** Default 10. */
  maxParallel: number;
  /** Hosts deployed first, alone; default 1. */
  canary: number;
  /** Default 0. */
  maxFailures: number;
  /** Default rollback-host. */
  onFailure: "rollback-host" | "rollback-all" | "halt";
  /** Seconds after a switch by which a host switches back by itself unless the deployment confirmed it; default 60. */
  confirmSeconds: number;
}

export interface Limits {
  /** Default 16 MiB. */
  maxFileBytes: number;
  /** Default 256 MiB. */
  maxReleaseBytes: number;
  /** Where manifests may place symlinks on a host; default /etc/, /usr/local/, /opt/, /srv/. */
  symlinkRoots: string[];
}

/** An app's `manifest.json`, with its defaults filled in. */
export interface Manifest {
  systemd: { units_enabled: string[] };
  /** Absolute host path → file in the app. */
  symlinks: Record<string, string>;
  checks: Check[];
  /** How a decrypted secret file is written, by its path in the app; absent: mode 0600, owner and group root. */
  secrets: Record<string, SecretFileMode>;
  /** Programs of the app run around the switch, in the order listed within each phase. */
  hooks: Hook[];
}

export const HOOK_PHASES = ["pre-activate", "post-activate", "pre-rollback", "post-rollback"] as const;
export type HookPhase = (typeof HOOK_PHASES)[number];

/**
 * A program of the app's release run on the host at a phase of its switch:
 * `pre-activate` in the new release before `current` moves (a migration),
 * `post-activate` after the units and checks pass, and the "down" pair,
 * `pre-rollback` and `post-rollback`, from the outgoing release when a host
 * goes back past it.
 */
export interface Hook {
  name: string;
  phase: HookPhase;
  /** A file of the app, executable, run from the release dir: never a shell string. */
  run: string;
  /** `once`: on the first host of the rollout only, before any other starts (default `each`). */
  on: "each" | "once";
  /** Default 300. */
  timeoutSeconds: number;
  /** `post-activate` only: `rollback` (default) switches the host back, `warn` reports and keeps it. */
  onFailure: "rollback" | "warn";
  /** Has no down: a rollback past it is reported `rolled-back (irreversible: NAME)`. */
  irreversible: boolean;
  /** Runs as this user; root by default. */
  user?: string;
}

/** A secret file's mode (octal, never world-readable) and group on the host. */
export interface SecretFileMode {
  mode: string;
  group?: string;
}

/** A check that must pass after the units settle: a command on the host, or an HTTP GET from it (status default 200); timeout default 30 s. */
export type Check =
  { name?: string; command: string; timeoutSeconds: number } | { name?: string; http: string; status: number; timeoutSeconds: number };

/** An environment's config tree read as hosts and apps: `<tree dir>/<host>/<app>/...`. */
export interface EnvTree {
  oid: string;
  hosts: Map<string, HostTree>;
}

export interface HostTree {
  oid: string;
  /** Undefined when the host's tree was not read (identical to what it is compared with). */
  apps?: Map<string, AppTree>;
}

export interface AppTree {
  oid: string;
  /** Files by path inside the app; undefined when not read. */
  files?: Map<string, FileEntry>;
  manifest?: Manifest;
}
