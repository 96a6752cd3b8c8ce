import { TidemarkError } from "./errors.js";

/** One thing wrong with a config tree: the file, the field or path inside it, and what is wrong. */
export interface Problem {
  file: string;
  field?: string;
  message: string;
  /** A secret file the operator's identities do not open: the file is fine as git goes, the operator cannot use it. */
  undecryptable?: true;
}

export function formatProblem(problem: Problem): string {
  if (problem.undecryptable) return `cannot decrypt ${problem.file}: ${problem.message}`;
  return `${problem.file}${problem.field ? `: ${problem.field}` : ""}: ${problem.message}`;
}

/** A config tree that cannot be deployed; every problem is reported at once. */
export class InvalidConfigError extends TidemarkError {
  constructor(readonly problems: Problem[]) {
    super(
      "CONFIG_INVALID",
      `the config tree is invalid (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n${problems.map((p) => `  - ${formatProblem(p)}`).join("\n")}`,
      "fix the files named above and push again; nothing was deployed",
    );
  }
}
