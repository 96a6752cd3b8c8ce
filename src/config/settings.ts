import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { z } from "zod";
import { TidemarkError } from "../core/errors.js";
import { fieldPath } from "./zod-problems.js";

const seconds = (what: string) => z.coerce.number({ error: `${what} is a number of seconds` }).nonnegative(`${what} is a number of seconds, 0 or more`);
/** A comma-separated list in a variable or flag, a list in the config file. */
const list = z.preprocess((value) => (typeof value === "string" ? value.split(",").map((item) => item.trim()).filter(Boolean) : value), z.array(z.string().min(1)).min(1));

/**
 * The operator's settings, from flags, environment variables and an optional
 * config file, flags winning. The only place that reads the environment.
 * Names are a contract for scripts (the README's settings table).
 */
const SettingsSchema = z.strictObject({
  repo: z.string().min(1).optional(),
  store: z.string().min(1).default(".tidemark/store.git"),
  storeRemote: z.string().min(1).optional(),
  mirrors: z.string().min(1).default(".tidemark/mirrors"),
  sshKey: z.string().min(1).optional(),
  sshAgent: z.string().min(1).optional(),
  knownHosts: z.string().min(1).optional(),
  // The operator service (serve, worker): defaults are filled in by operatorSettings.
  listen: z.string().regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "listen is HOST:PORT, e.g. 127.0.0.1:8080").optional(),
  redis: z.string().regex(/^rediss?:\/\/.+/, "redis is a redis:// or rediss:// (TLS) URL, e.g. redis://:password@127.0.0.1:6379/0").optional(),
  redisCa: z.string().min(1).optional(),
  webhookSecrets: list.optional(),
  pollInterval: seconds("pollInterval").optional(),
  settle: seconds("settle").optional(),
  takeoverAfter: seconds("takeoverAfter").min(1, "takeoverAfter is at least 1 second").optional(),
  shutdownTimeout: seconds("shutdownTimeout").optional(),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error"]).optional(),
});

export type Settings = z.infer<typeof SettingsSchema>;

const ENV: Record<string, keyof Settings> = {
  TIDEMARK_REPO: "repo",
  TIDEMARK_STORE: "store",
  TIDEMARK_STORE_REMOTE: "storeRemote",
  TIDEMARK_MIRRORS: "mirrors",
  TIDEMARK_SSH_KEY: "sshKey",
  TIDEMARK_KNOWN_HOSTS: "knownHosts",
  SSH_AUTH_SOCK: "sshAgent",
  TIDEMARK_LISTEN: "listen",
  TIDEMARK_REDIS_URL: "redis",
  TIDEMARK_REDIS_CA: "redisCa",
  TIDEMARK_WEBHOOK_SECRET: "webhookSecrets",
  TIDEMARK_POLL_INTERVAL: "pollInterval",
  TIDEMARK_SETTLE: "settle",
  TIDEMARK_TAKEOVER_AFTER: "takeoverAfter",
  TIDEMARK_SHUTDOWN_TIMEOUT: "shutdownTimeout",
  TIDEMARK_LOG_LEVEL: "logLevel",
};

/** Where a person sets each setting, for error lines. */
const WHERE: Partial<Record<keyof Settings, string>> = Object.fromEntries(Object.entries(ENV).map(([name, key]) => [key, `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} or ${name}`]));
WHERE.webhookSecrets = "TIDEMARK_WEBHOOK_SECRET (comma-separated) or webhookSecrets in the config file";

export type Flags = Partial<Record<keyof Settings, string | undefined>> & { config?: string };

export function loadSettings(flags: Flags, env: NodeJS.ProcessEnv): Settings {
  const configPath = flags.config ?? env.TIDEMARK_CONFIG;
  let fromFile: Record<string, unknown> = {};
  if (configPath) {
    try {
      fromFile = (parse(readFileSync(configPath, "utf8")) ?? {}) as Record<string, unknown>;
    } catch (error) {
      throw new TidemarkError("SETTINGS_INVALID", `cannot read the config file ${configPath}: ${error instanceof Error ? error.message : String(error)}`, "pass --config with a readable YAML or JSON file", { cause: error });
    }
  }
  const fromEnv = Object.fromEntries(Object.entries(ENV).flatMap(([name, key]) => (env[name] ? [[key, env[name]]] : [])));
  const fromFlags = Object.fromEntries(Object.entries(flags).filter(([key, value]) => key !== "config" && value !== undefined));
  const parsed = SettingsSchema.safeParse({ ...fromFile, ...fromEnv, ...fromFlags });
  if (!parsed.success) {
    // A secret's value never goes into an error line: zod's messages here name the field, not the input.
    const lines = parsed.error.issues.map((issue) => `${fieldPath(issue.path)}: ${issue.message}${WHERE[issue.path[0] as keyof Settings] ? ` (${WHERE[issue.path[0] as keyof Settings]})` : ""}`);
    throw new TidemarkError("SETTINGS_INVALID", `invalid settings:\n  ${lines.join("\n  ")}`, `fix ${configPath ?? "the flags and TIDEMARK_* variables"}`);
  }
  return parsed.data;
}

export function requireRepo(settings: Settings): string {
  if (!settings.repo) throw new TidemarkError("REPO_MISSING", "no source repo given", "pass --repo URL or set TIDEMARK_REPO");
  return settings.repo;
}

/** What `serve` and `worker` run with: every operator setting present, defaults filled in (a worker listens only when given an address). */
export interface OperatorSettings extends Settings {
  repo: string;
  redis: string;
  webhookSecrets: string[];
  pollInterval: number;
  settle: number;
  takeoverAfter: number;
  shutdownTimeout: number;
}

/** Checks what the service needs before anything starts; every missing setting is one line. */
export function operatorSettings(settings: Settings, role: "serve" | "worker"): OperatorSettings {
  const full = { ...(role === "serve" ? { listen: "127.0.0.1:8080" } : {}), webhookSecrets: [], pollInterval: 60, settle: 1, takeoverAfter: 30, shutdownTimeout: 60, ...settings } as OperatorSettings;
  const problems: string[] = [];
  if (!settings.repo) problems.push(`repo: missing (${WHERE.repo})`);
  if (!settings.redis) problems.push(`redis: missing (${WHERE.redis})`);
  if (!settings.sshKey && !settings.sshAgent) problems.push(`sshKey: missing, and no agent at SSH_AUTH_SOCK (${WHERE.sshKey})`);
  if (role === "serve" && full.webhookSecrets.length === 0 && full.pollInterval === 0) {
    problems.push(`webhookSecrets: missing, and polling is off: nothing would ever deploy (set ${WHERE.webhookSecrets}, or a pollInterval above 0)`);
  }
  if (problems.length > 0) throw new TidemarkError("SETTINGS_INVALID", `cannot start ${role}:\n  ${problems.join("\n  ")}`, `set them as flags, TIDEMARK_* variables or in the --config file; see tidemark ${role} --help`);
  return full;
}
