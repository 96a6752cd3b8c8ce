/** Exit codes, documented in the README: scripts rely on them. */
export const EXIT = {
  ok: 0,
  /** Something failed: a host failed or rolled back, or an error with no code of its own. */
  failed: 1,
  /** The config or tree is invalid: nothing was (or would be) deployed. */
  invalid: 2,
  /** Hosts could not be reached or locked. */
  unreachable: 3,
  /** The source repo or the store remote could not be reached. */
  repoUnreachable: 4,
  /** The command line was wrong. */
  usage: 64,
} as const;
