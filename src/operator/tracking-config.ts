import { UnrecoverableError } from "bullmq";
import type { SourceConfig } from "../config/source-config.js";
import { InvalidConfigError } from "../core/problems.js";
import type { SourceMirror } from "../git/mirror.js";
import { defaultBranch, readSourceConfig } from "../pipeline/read-source.js";

/** `tidemark.yaml` on the default branch, where every environment's tracking rule is read; an invalid one ends the job (a retry cannot fix it, the next push will). */
export async function trackingConfig(mirror: SourceMirror): Promise<SourceConfig> {
  const head = await defaultBranch(mirror);
  try {
    return await readSourceConfig(mirror, head.commit);
  } catch (error) {
    if (error instanceof InvalidConfigError) throw new UnrecoverableError(`tidemark.yaml on ${head.ref} at ${head.commit.slice(0, 7)} is invalid: ${error.message}`);
    throw error;
  }
}
