import { mkdirSync } from "node:fs";
import { loadSettings, requireRepo, type Settings } from "../config/settings.js";
import { SourceMirror } from "../git/mirror.js";
import { Store } from "../store/store.js";

/** The flags every command shares; names are a contract for scripts. */
export interface CommonFlags {
  repo?: string;
  store?: string;
  storeRemote?: string;
  sshKey?: string;
  knownHosts?: string;
  config?: string;
  json?: boolean;
}

export interface Context {
  settings: Settings;
  json: boolean;
  out: (text: string) => void;
}

export function context(flags: CommonFlags, env: NodeJS.ProcessEnv, out: (text: string) => void): Context {
  return { settings: loadSettings({ repo: flags.repo, store: flags.store, storeRemote: flags.storeRemote, sshKey: flags.sshKey, knownHosts: flags.knownHosts, config: flags.config }, env), json: flags.json === true, out };
}

/** The source repo's mirror, fetched now. */
export async function openMirror(ctx: Context): Promise<SourceMirror> {
  mkdirSync(ctx.settings.mirrors, { recursive: true });
  const mirror = await SourceMirror.open(requireRepo(ctx.settings), ctx.settings.mirrors);
  await mirror.fetch();
  return mirror;
}

/** The store, with the environment's history brought up to date from the store remote when there is one. */
export async function openStore(ctx: Context, environment: string): Promise<Store> {
  const store = await Store.open(ctx.settings.store, { remote: ctx.settings.storeRemote });
  await store.sync(environment);
  return store;
}
