import type { Logger } from "pino";
import type { OperatorSettings } from "../config/settings.js";
import type { SourceMirror } from "../git/mirror.js";
import type { DeployOptions } from "../pipeline/deploy.js";
import type { Report } from "../core/reports.js";
import type { OperatorQueues } from "../queue/queues.js";
import type { SecretOpener } from "../secrets/secret-files.js";
import type { Store } from "../store/store.js";
import type { OperatorMetrics } from "./metrics.js";

/** What the jobs of a server or worker share: opened once at start, closed at stop. */
export interface Operator {
  settings: OperatorSettings;
  mirror: SourceMirror;
  store: Store;
  queues: OperatorQueues;
  log: Logger;
  metrics: OperatorMetrics;
  /** How deployments reach hosts: the SSH key or agent, the connections kept between deployments, known_hosts, settle time; and what is redacted before the store keeps it. */
  deploy: Omit<DeployOptions, "trigger" | "stop" | "observe">;
  /** Opens the config tree's secret files with the identities of TIDEMARK_AGE_KEY_FILE, read at start; previews never use it. */
  open: SecretOpener;
  /** Queues a batch of reports for GitHub, posted in its order; a no-op when reporting is off. Never throws: a report is never worth a deployment. */
  report: (reports: Report[]) => Promise<void>;
}
