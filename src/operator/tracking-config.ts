import { UnrecoverableError } from "bullmq";
import type { SourceConfig } from "../core/config.js";
import type { SourceMirror } from "../git/mirror.js";
import { InvalidTrackingConfigError, readTrackingConfig } from "../pipeline/read-source.js";

/** `tidemark.yaml` on the default branch, where every environment's tracking rule is read; an invalid one ends the job (a retry cannot fix it, the next push will). */
export async function trackingConfig(mirror: SourceMirror): Promise<SourceConfig> {
  try {
    return await readTrackingConfig(mirror);
  } catch (error) {
    if (error instanceof InvalidTrackingConfigError) throw new UnrecoverableError(error.message);
    throw error;
  }
}
