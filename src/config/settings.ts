import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { z } from "zod";
import { TidemarkError } from "../core/errors.js";
import { fieldPath } from "./zod-problems.js";

/**
 * The operator's settings, from flags, environment variables and an optional
 * config file, flags winning. The only place that reads the environment.
 * Names are a contract for scripts: --repo/TIDEMARK_REPO, --store/TIDEMARK_STORE,
 * --store-remote/TIDEMARK_STORE_REMOTE, --config/TIDEMARK_CONFIG, --ssh-key/TIDEMARK_SSH_KEY,
 * --known-hosts/TIDEMARK_KNOWN_HOSTS.
 */
const SettingsSchema = z.strictObject({
  repo: z.string().min(1).optional(),
  store: z.string().min(1).default(".tidemark/store.git"),
  storeRemote: z.string().min(1).optional(),
  mirrors: z.string().min(1).default(".tidemark/mirrors"),
  sshKey: z.string().min(1).optional(),
  sshAgent: z.string().min(1).optional(),
  knownHosts: z.string().min(1).optional(),
});

export type Settings = z.infer<typeof SettingsSchema>;

const ENV: Record<string, keyof Settings> = { TIDEMARK_REPO: "repo", TIDEMARK_STORE: "store", TIDEMARK_STORE_REMOTE: "storeRemote", TIDEMARK_MIRRORS: "mirrors", TIDEMARK_SSH_KEY: "sshKey", TIDEMARK_KNOWN_HOSTS: "knownHosts", SSH_AUTH_SOCK: "sshAgent" };

export function loadSettings(flags: Partial<Record<keyof Settings, string | undefined>> & { config?: string }, env: NodeJS.ProcessEnv): Settings {
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
    const lines = parsed.error.issues.map((issue) => `${fieldPath(issue.path)}: ${issue.message}`);
    throw new TidemarkError("SETTINGS_INVALID", `invalid settings:\n  ${lines.join("\n  ")}`, `fix ${configPath ?? "the flags and TIDEMARK_* variables"}`);
  }
  return parsed.data;
}

export function requireRepo(settings: Settings): string {
  if (!settings.repo) throw new TidemarkError("REPO_MISSING", "no source repo given", "pass --repo URL or set TIDEMARK_REPO");
  return settings.repo;
}
