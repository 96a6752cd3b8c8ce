/** Exit codes of the CLI: scripts rely on them (docs/errors.md). */
export const EXIT = {
  ok: 0,
  /** Something failed: a host failed or rolled back, or an error whose code says so. */
  failed: 1,
  /** The config or tree is invalid: nothing was (or would be) deployed. */
  invalid: 2,
  /** Hosts could not be reached or locked. */
  unreachable: 3,
  /** The source repo or the store remote could not be reached. */
  repoUnreachable: 4,
  /** `tidemark drift`: a host differs from the release recorded for it. */
  drift: 5,
  /** The command line was wrong. */
  usage: 64,
} as const;

export type ExitName = keyof typeof EXIT;

interface ErrorClass {
  /** What happened, for docs/errors.md. */
  meaning: string;
  /** The CLI's exit code when this error ends a command. */
  exit: ExitName;
  /** Whether the same work, tried again later unchanged, can succeed: the worker retries only these. */
  retry: boolean;
}

/**
 * Every code a TidemarkError carries: the one place that says what it means,
 * how the CLI exits on it and whether trying again can help.
 * docs/errors.md is generated from this table (`npm run docs:errors`).
 */
export const ERROR_CODES = {
  CONFIG_INVALID: {
    meaning: "tidemark.yaml or an environment's config tree cannot be deployed; every problem is listed with its file and field",
    exit: "invalid",
    retry: false,
  },
  SETTINGS_INVALID: {
    meaning: "the operator's settings (flags, TIDEMARK_* variables, the config file) are missing or malformed; every one is listed",
    exit: "failed",
    retry: false,
  },
  USAGE: {
    meaning: "the command line asks for something that does not fit the environment (e.g. --revert for a tag-tracked one)",
    exit: "usage",
    retry: false,
  },
  IRREVERSIBLE_HOOK: {
    meaning: "a rollback would go back past a hook marked irreversible, and --force was not given",
    exit: "usage",
    retry: false,
  },
  CONFIRMATION_NEEDED: { meaning: "a command that changes hosts found no terminal to ask and no --yes", exit: "usage", retry: false },
  ENV_UNKNOWN: { meaning: "the environment is not in tidemark.yaml on the default branch", exit: "usage", retry: false },
  HOST_NOT_IN_ENV: { meaning: "the host named (plan --explain) is not one of the environment's hosts", exit: "usage", retry: false },
  ENV_PINNED: { meaning: "the environment is pinned by tidemark rollback: deploys wait for tidemark unpin", exit: "failed", retry: false },
  NOTHING_TO_DEPLOY: {
    meaning: "a deployment was asked of a plan that changes no host (the commands check first: this is a bug)",
    exit: "failed",
    retry: false,
  },
  REF_UNKNOWN: { meaning: "the ref given is not a branch, tag or commit of the source repo", exit: "usage", retry: false },
  REF_AMBIGUOUS: { meaning: "the name given is both a branch and a tag", exit: "usage", retry: false },
  REF_UNRESOLVED: { meaning: "the branch or tag an environment tracks does not exist (yet)", exit: "failed", retry: true },
  ROLLBACK_TARGET_UNKNOWN: {
    meaning: "tidemark rollback has nothing to go back to: no such deployment, or a commit never deployed there",
    exit: "usage",
    retry: false,
  },
  REPO_MISSING: { meaning: "no source repo was given", exit: "failed", retry: false },
  REPO_URL: { meaning: "the source repo's URL is not one Tidemark can fetch (http or https)", exit: "failed", retry: false },
  REPO_EMPTY: { meaning: "the source repo has no branch yet", exit: "failed", retry: true },
  REPO_NO_HEAD: { meaning: "the source repo's HEAD names a branch that does not exist", exit: "failed", retry: false },
  REPO_UNREACHABLE: { meaning: "the source repo did not answer, or refused the credentials", exit: "repoUnreachable", retry: true },
  REPO_PUSH_FAILED: {
    meaning: "the source repo refused a push of tidemark rollback (a moved tag or a revert commit)",
    exit: "failed",
    retry: false,
  },
  MIRROR_PACKS: {
    meaning: "the source mirror's packs could not be merged (usually a full disk); the mirror stays whole",
    exit: "failed",
    retry: true,
  },
  LOCK_HELD: { meaning: "a lock file of the mirror or the store is held by a live process past the wait", exit: "failed", retry: true },
  STORE_CONTENDED: { meaning: "the store kept moving under too many writers at once", exit: "failed", retry: true },
  STORE_REMOTE_URL: { meaning: "the store remote's URL is not one Tidemark can push to", exit: "failed", retry: false },
  STORE_REMOTE_NO_HEAD: { meaning: "the store remote has no default branch", exit: "failed", retry: false },
  STORE_REMOTE_UNREACHABLE: { meaning: "the store remote did not answer or refused a push", exit: "repoUnreachable", retry: true },
  REDIS_UNREACHABLE: { meaning: "Redis did not answer", exit: "failed", retry: true },
  LISTEN_FAILED: { meaning: "the webhook server could not listen on the address given", exit: "failed", retry: false },
  JOB_DATA_INVALID: {
    meaning: "a job's data read back from Redis does not have the shape this Tidemark queues: the job fails for good",
    exit: "failed",
    retry: false,
  },
  GITHUB_REPO_UNKNOWN: { meaning: "the GitHub repository could not be told from the source repo's URL", exit: "failed", retry: false },
  GITHUB_APP_KEY: { meaning: "the GitHub App's private key cannot be read", exit: "failed", retry: false },
  SSH_KEY_UNREADABLE: { meaning: "the operator's SSH private key cannot be read", exit: "failed", retry: false },
  KNOWN_HOSTS_UNREADABLE: { meaning: "the known_hosts file given cannot be read", exit: "failed", retry: false },
  HOST_KEY_INVALID: { meaning: "a pinned host key is not an OpenSSH public key", exit: "failed", retry: false },
  HOST_KEY_UNKNOWN: { meaning: "a host has no pinned key: Tidemark never trusts a key on first use", exit: "unreachable", retry: false },
  HOST_KEY_MISMATCH: { meaning: "a host offered a key that is not the pinned one", exit: "unreachable", retry: false },
  HOST_UNREACHABLE: { meaning: "a host could not be connected to or refused the operator's key", exit: "unreachable", retry: true },
  HOST_DISK_FULL: { meaning: "a host's disk is full", exit: "failed", retry: false },
  HOST_NOT_DEPLOYED: {
    meaning: "a host named on the command line has no release recorded in the environment",
    exit: "usage",
    retry: false,
  },
  SECRET_UNREADABLE: {
    meaning: "a secret file of the config tree did not open with the operator's age identities",
    exit: "failed",
    retry: false,
  },
  SSH_CONNECTION_LOST: { meaning: "the SSH connection to a host went away", exit: "unreachable", retry: true },
  SSH_CHANNEL: { meaning: "a host refused a new SSH session (sshd's MaxSessions)", exit: "unreachable", retry: true },
  HOST_SHELL_FAILED: {
    meaning: "the host's shell for a deployment did not start or ended early (sudo refused, no sh)",
    exit: "unreachable",
    retry: false,
  },
  SSH_COMMAND_TIMEOUT: { meaning: "a command on a host ran past its time limit and was cut", exit: "failed", retry: true },
} as const satisfies Record<string, ErrorClass>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The CLI's exit code for an error: a Tidemark error's by its code, any other error's `failed`. */
export function exitCodeOf(code: ErrorCode | undefined): number {
  return EXIT[code ? ERROR_CODES[code].exit : "failed"];
}

/** Whether trying again can help: an error without a code (a bug, an I/O hiccup) is given the benefit of the doubt. */
export function retryHelps(code: ErrorCode | undefined): boolean {
  return code ? ERROR_CODES[code].retry : true;
}

/** docs/errors.md, from the table. */
export function errorsDoc(): string {
  const exits = Object.entries(EXIT).map(([name, code]) => `| ${code} | \`${name}\` |`);
  const rows = Object.entries(ERROR_CODES).map(
    ([code, { meaning, exit, retry }]) => `| \`${code}\` | ${meaning} | ${EXIT[exit]} | ${retry ? "yes" : "no"} |`,
  );
  return [
    "# Errors",
    "",
    "<!-- Generated from src/core/error-codes.ts by `npm run docs:errors`; a test keeps the two the same. -->",
    "",
    "Every error Tidemark raises on purpose carries a code, a message that says what",
    "happened and a hint that says what to do. The CLI prints `tidemark: <message> (<CODE>)`",
    "and the hint, and exits with the code's exit code. The operator's worker tries a",
    "deployment again later only when a retry can help; otherwise it ends the job and",
    "reports the error on the commit. An error without a code (a bug) exits 1 and is retried.",
    "",
    "A host's outcome is not an error: a deployment whose hosts failed, rolled back or",
    "could not be reached exits 1 (or 3 when hosts were only unreachable) with every",
    "host's outcome printed.",
    "",
    "## Exit codes",
    "",
    "| exit | name |",
    "| --- | --- |",
    ...exits,
    "",
    "## Codes",
    "",
    "| code | what happened | exit | retry can help |",
    "| --- | --- | --- | --- |",
    ...rows,
    "",
  ].join("\n");
}
