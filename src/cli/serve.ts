import { pino } from "pino";
import { loadSettings, operatorSettings, settingsRedactor, type Flags } from "../config/settings.js";
import { redactDeep } from "../core/redact.js";
import { OperatorService } from "../operator/service.js";
import { EXIT } from "./exit-codes.js";

/**
 * `tidemark serve` and `tidemark worker`: runs until SIGTERM or SIGINT, then
 * stops gracefully (see OperatorService.stop). Logs are JSON lines on stdout.
 */
export async function serviceCommand(role: "serve" | "worker", flags: Flags, env: NodeJS.ProcessEnv): Promise<number> {
  const settings = operatorSettings(loadSettings(flags, env), role);
  const redact = settingsRedactor(settings);
  const log = pino({
    base: { role, pid: process.pid },
    level: settings.logLevel ?? "info",
    hooks: {
      logMethod(args, method) {
        method.apply(this, redactDeep<Parameters<typeof method>>(args, redact));
      },
    },
  });
  const service = await OperatorService.start(settings, role, log, redact);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  log.info({ signal }, "signal received");
  // A second signal does not wait: the jobs in flight are taken over by another worker.
  const again = (second: NodeJS.Signals) => {
    log.warn({ signal: second }, "second signal: exiting now");
    process.exit(EXIT.failed);
  };
  process.once("SIGTERM", again).once("SIGINT", again);
  if (await service.stop()) {
    // Everything is closed; should a stray handle still hold the process (seen once under load), do not wait on it.
    setTimeout(() => {
      log.warn("stopped, but a handle kept the process alive; exiting");
      process.exit(EXIT.ok);
    }, 2000).unref();
    return EXIT.ok;
  }
  // Timed out: connections and jobs are still open; leave now rather than wait on them.
  process.exit(EXIT.failed);
}
