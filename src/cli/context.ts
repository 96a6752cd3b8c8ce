import { mkdirSync } from "node:fs";
import { loadSettings, requireRepo, type Settings } from "../config/settings.js";
import { SourceMirror } from "../git/mirror.js";
import { secretOpener, type SecretOpener } from "../secrets/secret-files.js";
import { Store } from "../store/store.js";

/** The flags every command shares; names are a contract for scripts. */
export interface CommonFlags {
  repo?: string;
  store?: string;
  storeRemote?: string;
  sshKey?: string;
  knownHosts?: string;
  config?: string;
  redis?: string;
  json?: boolean;
}

export interface Context {
  settings: Settings;
  json: boolean;
  out: (text: string) => void;
}

export function context(flags: CommonFlags, env: NodeJS.ProcessEnv, out: (text: string) => void): Context {
  return {
    settings: loadSettings(
      {
        repo: flags.repo,
        store: flags.store,
        storeRemote: flags.storeRemote,
        sshKey: flags.sshKey,
        knownHosts: flags.knownHosts,
        config: flags.config,
        redis: flags.redis,
      },
      env,
    ),
    json: flags.json === true,
    out,
  };
}

/** The source repo's mirror, fetched now unless asked not to. */
export async function openMirror(ctx: Context, { fetch = true } = {}): Promise<SourceMirror> {
  mkdirSync(ctx.settings.mirrors, { recursive: true });
  const mirror = await SourceMirror.open(requireRepo(ctx.settings), ctx.settings.mirrors);
  if (fetch) await mirror.fetch();
  return mirror;
}

/** The store, with the environment's history brought up to date from the store remote when there is one. */
export async function openStore(ctx: Context, environment: string): Promise<Store> {
  const store = await Store.open(ctx.settings.store, { remote: ctx.settings.storeRemote });
  await store.sync(environment);
  return store;
}

/** What opens the config tree's secret files: the identities of TIDEMARK_AGE_KEY_FILE, read once per command. */
export function secretsOpener(ctx: Context): SecretOpener {
  return secretOpener(ctx.settings.ageKeyFile ?? []);
}
