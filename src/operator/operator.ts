import type { Logger } from "pino";
import type { OperatorSettings } from "../config/settings.js";
import type { SourceMirror } from "../git/mirror.js";
import type { DeployOptions } from "../pipeline/deploy.js";
import type { CommitStatus } from "../core/statuses.js";
import type { DeploymentReport, OperatorQueues } from "../queue/queues.js";
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
  /** How deployments reach hosts: the SSH key or agent, known_hosts, settle time. */
  deploy: Omit<DeployOptions, "trigger" | "stop" | "observe">;
  /** Queues reports for GitHub; a no-op when reporting is off. Never throws: a report is never worth a deployment. */
  report: (statuses: CommitStatus[], deployment?: DeploymentReport) => Promise<void>;
}
