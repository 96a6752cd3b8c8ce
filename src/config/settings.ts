import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { z } from "zod";
import { TidemarkError } from "../core/errors.js";
import { redactor, type Redactor } from "../core/redact.js";
import { fieldPath } from "./zod-problems.js";

const seconds = (what: string) =>
  z.coerce.number({ error: `${what} is a number of seconds` }).nonnegative(`${what} is a number of seconds, 0 or more`);
const flag = z.preprocess(
  (value) => (value === "true" || value === "1" ? true : value === "false" || value === "0" ? false : value),
  z.boolean({ error: "true or false" }),
);
/** A comma-separated list in a variable or flag, a list in the config file. */
const list = z.preprocess(
  (value) =>
    typeof value === "string"
      ? value
          .split(",")
          .map((item) => item.trim())
          .filter(Boolean)
      : value,
  z.array(z.string().min(1)).min(1),
);

/**
 * The operator's settings, from flags, environment variables and an optional
 * config file, flags winning. The only place that reads the environment.
 * Names are a contract for scripts (docs/configuration.md, "The operator's settings").
 */
const SettingsSchema = z.strictObject({
  repo: z.string().min(1).optional(),
  store: z.string().min(1).default(".tidemark/store.git"),
  storeRemote: z.string().min(1).optional(),
  mirrors: z.string().min(1).default(".tidemark/mirrors"),
  sshKey: z.string().min(1).optional(),
  sshAgent: z.string().min(1).optional(),
  knownHosts: z.string().min(1).optional(),
  /** age key files (age-keygen's format) whose identities open the secret files of config trees; several during a rotation. */
  ageKeyFile: list.optional(),
  // The operator service (serve, worker): defaults are filled in by operatorSettings.
  listen: z
    .string()
    .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "listen is HOST:PORT, e.g. 127.0.0.1:8080")
    .optional(),
  redis: z
    .string()
    .regex(/^rediss?:\/\/.+/, "redis is a redis:// or rediss:// (TLS) URL, e.g. redis://:password@127.0.0.1:6379/0")
    .optional(),
  redisCa: z.string().min(1).optional(),
  webhookSecrets: list.optional(),
  pollInterval: seconds("pollInterval").optional(),
  settle: seconds("settle").optional(),
  takeoverAfter: seconds("takeoverAfter").min(1, "takeoverAfter is at least 1 second").optional(),
  shutdownTimeout: seconds("shutdownTimeout").optional(),
  sshIdle: seconds("sshIdle").int("sshIdle is a whole number of seconds").optional(),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error"]).optional(),
  // Reporting to GitHub (commit statuses, Deployments): on when a token or an App is given.
  githubToken: z.string().min(1).optional(),
  githubApiUrl: z.url({ error: "githubApiUrl is a URL, e.g. https://github.example.com/api/v3" }).optional(),
  githubRepo: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/, "githubRepo is owner/name")
    .optional(),
  githubAppId: z.coerce.number({ error: "githubAppId is the App's numeric id" }).int().positive().optional(),
  githubAppKey: z.string().min(1).optional(),
  githubAppInstallation: z.coerce.number({ error: "githubAppInstallation is the installation's numeric id" }).int().positive().optional(),
  githubDeployments: flag.optional(),
  githubWriteInterval: seconds("githubWriteInterval").optional(),
  githubReportTimeout: seconds("githubReportTimeout").optional(),
  hostStatuses: flag.optional(),
  hostStatusLimit: z.coerce.number({ error: "hostStatusLimit is a number of hosts" }).int().nonnegative().optional(),
  publicUrl: z.url({ error: "publicUrl is the operator's URL as people reach it, e.g. https://tidemark.example.com" }).optional(),
});

export type Settings = z.infer<typeof SettingsSchema>;

const ENV: Record<string, keyof Settings> = {
  TIDEMARK_REPO: "repo",
  TIDEMARK_STORE: "store",
  TIDEMARK_STORE_REMOTE: "storeRemote",
  TIDEMARK_MIRRORS: "mirrors",
  TIDEMARK_SSH_KEY: "sshKey",
  TIDEMARK_KNOWN_HOSTS: "knownHosts",
  TIDEMARK_AGE_KEY_FILE: "ageKeyFile",
  SSH_AUTH_SOCK: "sshAgent",
  TIDEMARK_LISTEN: "listen",
  TIDEMARK_REDIS_URL: "redis",
  TIDEMARK_REDIS_CA: "redisCa",
  TIDEMARK_WEBHOOK_SECRET: "webhookSecrets",
  TIDEMARK_POLL_INTERVAL: "pollInterval",
  TIDEMARK_SETTLE: "settle",
  TIDEMARK_TAKEOVER_AFTER: "takeoverAfter",
  TIDEMARK_SHUTDOWN_TIMEOUT: "shutdownTimeout",
  TIDEMARK_SSH_IDLE: "sshIdle",
  TIDEMARK_LOG_LEVEL: "logLevel",
  TIDEMARK_GITHUB_TOKEN: "githubToken",
  TIDEMARK_GITHUB_API_URL: "githubApiUrl",
  TIDEMARK_GITHUB_REPO: "githubRepo",
  TIDEMARK_GITHUB_APP_ID: "githubAppId",
  TIDEMARK_GITHUB_APP_KEY: "githubAppKey",
  TIDEMARK_GITHUB_APP_INSTALLATION: "githubAppInstallation",
  TIDEMARK_GITHUB_DEPLOYMENTS: "githubDeployments",
  TIDEMARK_GITHUB_WRITE_INTERVAL: "githubWriteInterval",
  TIDEMARK_GITHUB_REPORT_TIMEOUT: "githubReportTimeout",
  TIDEMARK_HOST_STATUSES: "hostStatuses",
  TIDEMARK_HOST_STATUS_LIMIT: "hostStatusLimit",
  TIDEMARK_PUBLIC_URL: "publicUrl",
};

/** Settings that also have a command-line flag; the rest come from the environment or the config file only. */
const FLAGGED = new Set<keyof Settings>([
  "repo",
  "store",
  "storeRemote",
  "sshKey",
  "knownHosts",
  "listen",
  "redis",
  "redisCa",
  "pollInterval",
  "settle",
  "takeoverAfter",
  "shutdownTimeout",
]);

/** Where a person sets each setting, for error lines. */
const WHERE: Partial<Record<keyof Settings, string>> = Object.fromEntries(
  Object.entries(ENV).map(([name, key]) => [
    key,
    FLAGGED.has(key) ? `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} or ${name}` : `${name} or ${key} in the config file`,
  ]),
);
WHERE.webhookSecrets = "TIDEMARK_WEBHOOK_SECRET (comma-separated) or webhookSecrets in the config file";
WHERE.ageKeyFile = "TIDEMARK_AGE_KEY_FILE (comma-separated) or ageKeyFile in the config file";

export type Flags = Partial<Record<keyof Settings, string | undefined>> & { config?: string };

export function loadSettings(flags: Flags, env: NodeJS.ProcessEnv): Settings {
  const configPath = flags.config ?? env.TIDEMARK_CONFIG;
  let fromFile: Record<string, unknown> = {};
  if (configPath) {
    try {
      fromFile = (parse(readFileSync(configPath, "utf8")) ?? {}) as Record<string, unknown>;
    } catch (error) {
      throw new TidemarkError(
        "SETTINGS_INVALID",
        `cannot read the config file ${configPath}: ${error instanceof Error ? error.message : String(error)}`,
        "pass --config with a readable YAML or JSON file",
        { cause: error },
      );
    }
  }
  const fromEnv = Object.fromEntries(Object.entries(ENV).flatMap(([name, key]) => (env[name] ? [[key, env[name]]] : [])));
  const fromFlags = Object.fromEntries(Object.entries(flags).filter(([key, value]) => key !== "config" && value !== undefined));
  const parsed = SettingsSchema.safeParse({ ...fromFile, ...fromEnv, ...fromFlags });
  if (!parsed.success) {
    // A secret's value never goes into an error line: zod's messages here name the field, not the input.
    const lines = parsed.error.issues.map(
      (issue) =>
        `${fieldPath(issue.path)}: ${issue.message}${WHERE[issue.path[0] as keyof Settings] ? ` (${WHERE[issue.path[0] as keyof Settings]})` : ""}`,
    );
    throw new TidemarkError(
      "SETTINGS_INVALID",
      `invalid settings:\n  ${lines.join("\n  ")}`,
      `fix ${configPath ?? "the flags and TIDEMARK_* variables"}`,
    );
  }
  return parsed.data;
}

export function requireRepo(settings: Settings): string {
  if (!settings.repo) throw new TidemarkError("REPO_MISSING", "no source repo given", "pass --repo URL or set TIDEMARK_REPO");
  return settings.repo;
}

/** What reporting to GitHub runs with, in `serve`, `worker` and the CLI's `deploy` and `rollback`: defaults filled in. */
export interface ReportingSettings extends Settings {
  githubApiUrl: string;
  githubDeployments: boolean;
  githubWriteInterval: number;
  /** How long `tidemark deploy` and `rollback` keep trying to post once the deployment is over (the operator's queue tries for hours). */
  githubReportTimeout: number;
  hostStatuses: boolean;
  hostStatusLimit: number;
}

/** What `serve` and `worker` run with: every operator setting present, defaults filled in (a worker listens only when given an address). */
export interface OperatorSettings extends ReportingSettings {
  repo: string;
  redis: string;
  webhookSecrets: string[];
  pollInterval: number;
  settle: number;
  takeoverAfter: number;
  shutdownTimeout: number;
  /** How long a host's SSH connection is kept open after a deployment, for the next one; 0 closes it at once. */
  sshIdle: number;
}

export const GITHUB_DEFAULTS = {
  githubApiUrl: "https://api.github.com",
  githubDeployments: true,
  githubWriteInterval: 1,
  githubReportTimeout: 30,
  hostStatuses: true,
  hostStatusLimit: 20,
};

/** A token or a whole App, not both: one line per problem. */
function gitHubProblems(settings: Settings): string[] {
  const problems: string[] = [];
  const app = [settings.githubAppId, settings.githubAppKey, settings.githubAppInstallation];
  if (app.some((value) => value !== undefined) && app.some((value) => value === undefined)) {
    problems.push(
      "githubApp: an App needs all three of githubAppId, githubAppKey and githubAppInstallation (TIDEMARK_GITHUB_APP_ID, TIDEMARK_GITHUB_APP_KEY, TIDEMARK_GITHUB_APP_INSTALLATION)",
    );
  }
  if (settings.githubToken && settings.githubAppId !== undefined) problems.push("githubToken: give a token or an App, not both");
  return problems;
}

/**
 * Reporting for `tidemark deploy` and `rollback`, from the same settings as
 * `serve`: undefined when no token or App is given (nothing is reported).
 * Checked before anything is deployed.
 */
export function cliReportingSettings(settings: Settings): ReportingSettings | undefined {
  const problems = gitHubProblems(settings);
  if (problems.length > 0)
    throw new TidemarkError(
      "SETTINGS_INVALID",
      `cannot report to GitHub:\n  ${problems.join("\n  ")}`,
      "set them as TIDEMARK_* variables or in the --config file, or unset the GitHub ones to deploy without reporting",
    );
  if (!settings.githubToken && settings.githubAppId === undefined) return undefined;
  return { ...GITHUB_DEFAULTS, ...settings };
}

/** Checks what the service needs before anything starts; every missing setting is one line. */
export function operatorSettings(settings: Settings, role: "serve" | "worker"): OperatorSettings {
  const full = {
    ...(role === "serve" ? { listen: "127.0.0.1:8080" } : {}),
    webhookSecrets: [],
    pollInterval: 60,
    settle: 1,
    takeoverAfter: 30,
    shutdownTimeout: 60,
    sshIdle: 600,
    ...GITHUB_DEFAULTS,
    ...settings,
  } as OperatorSettings;
  const problems: string[] = [];
  if (!settings.repo) problems.push(`repo: missing (${WHERE.repo})`);
  if (!settings.redis) problems.push(`redis: missing (${WHERE.redis})`);
  if (!settings.sshKey && !settings.sshAgent) problems.push(`sshKey: missing, and no agent at SSH_AUTH_SOCK (${WHERE.sshKey})`);
  if (role === "serve" && full.webhookSecrets.length === 0 && full.pollInterval === 0) {
    problems.push(
      `webhookSecrets: missing, and polling is off: nothing would ever deploy (set ${WHERE.webhookSecrets}, or a pollInterval above 0)`,
    );
  }
  problems.push(...gitHubProblems(settings));
  if (problems.length > 0)
    throw new TidemarkError(
      "SETTINGS_INVALID",
      `cannot start ${role}:\n  ${problems.join("\n  ")}`,
      `set them as flags, TIDEMARK_* variables or in the --config file; see tidemark ${role} --help`,
    );
  return full;
}

/** Removes every secret these settings hold from a text: tokens, webhook secrets, passwords in URLs, the App's key. */
export function settingsRedactor(settings: Settings): Redactor {
  const password = (url: string | undefined) => {
    try {
      return url ? decodeURIComponent(new URL(url).password) : undefined;
    } catch {
      return undefined;
    }
  };
  return redactor([
    settings.githubToken,
    ...(settings.webhookSecrets ?? []),
    password(settings.redis),
    password(settings.repo),
    password(settings.storeRemote),
  ]);
}
