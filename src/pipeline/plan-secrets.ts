import type { EnvTree } from "../core/config.js";
import type { Plan } from "../core/plan.js";
import type { Problem } from "../core/problems.js";
import { AGE_SUFFIX, type FileEntry } from "../core/tree.js";
import type { TreeObjects } from "../git/tree-reader.js";
import { mayBeSops, secretKind, type OpenedSecret, type SecretKind, type SecretOpener } from "../secrets/secret-files.js";

/** An app's files, and where they are in the source repo's tree (`clusters/prod/web01/app`). */
export interface AppFiles {
  at: string;
  files: ReadonlyMap<string, FileEntry>;
}

export interface OpenedSecrets {
  /** Per app (by `at`), the paths of its secret files. */
  secrets: Map<string, Set<string>>;
  /** Each secret file met, once per app, named as in git; `why` when it was opened and did not open. */
  files: Array<{ file: string; kind: SecretKind; oid: string; why?: string }>;
  /** The files that do not open, each named as in git. */
  problems: Problem[];
  /** What the files that opened hold, for the redaction set. */
  values: string[];
}

/**
 * Finds the secret files of some apps and, given an opener, opens each once
 * by blob, however many hosts share it. What opened is not kept: only its
 * values, for the caller's redaction set.
 */
export async function openSecrets(apps: Iterable<AppFiles>, objects: TreeObjects, open?: SecretOpener): Promise<OpenedSecrets> {
  const opened = new Map<string, Promise<OpenedSecret | { why: string }>>();
  const secrets = new Map<string, Set<string>>();
  const files: OpenedSecrets["files"] = [];
  const values = new Set<string>();
  const blob = (oid: string) => objects.blob(oid);
  for (const { at, files: appFiles } of apps) {
    for (const [path, entry] of appFiles) {
      if (!entry.age && !mayBeSops(path)) continue;
      const kind = await secretKind(path, entry, blob);
      if (!kind) continue;
      let paths = secrets.get(at);
      if (!paths) secrets.set(at, (paths = new Set()));
      paths.add(path);
      const file = `${at}/${path}${entry.age ? AGE_SUFFIX : ""}`;
      if (!open) {
        files.push({ file, kind, oid: entry.oid });
        continue;
      }
      const key = `${kind} ${entry.oid}`;
      let result = opened.get(key);
      if (!result) opened.set(key, (result = blob(entry.oid).then((bytes) => open(kind, bytes))));
      const done = await result;
      files.push({ file, kind, oid: entry.oid, ...("why" in done ? { why: done.why } : {}) });
      if (!("why" in done)) for (const value of done.values) values.add(value);
    }
  }
  const problems = files.flatMap(({ file, why }) => (why === undefined ? [] : [{ file, message: why, undecryptable: true as const }]));
  return { secrets, files, problems, values: [...values] };
}

/** The apps of an environment's tree, whole: what `tidemark validate` opens. */
export function envApps(tree: string, env: EnvTree): AppFiles[] {
  return [...env.hosts].flatMap(([host, { apps }]) =>
    [...(apps ?? [])].map(([app, { files }]) => ({ at: `${tree}/${host}/${app}`, files: files ?? new Map() })),
  );
}

/**
 * A plan's secrets: the files of every app it deploys are opened (a SOPS file
 * changed by `sops updatekeys` only is opened too, and a release whose base
 * is gone from its host uploads them all), and its changed secret files are
 * marked, so no one is shown as an ordinary file.
 */
export async function planSecrets(
  plan: Plan,
  desired: EnvTree,
  tree: string,
  objects: TreeObjects,
  open?: SecretOpener,
): Promise<{ plan: Plan } & OpenedSecrets> {
  const apps = plan.hosts.flatMap((host) =>
    host.apps
      .filter((app) => app.release !== null)
      .map((app) => ({
        at: `${tree}/${host.host}/${app.app}`,
        files: desired.hosts.get(host.host)?.apps?.get(app.app)?.files ?? new Map<string, FileEntry>(),
      })),
  );
  const opened = await openSecrets(apps, objects, open);
  if (opened.secrets.size === 0) return { plan, ...opened };
  const marked: Plan = {
    ...plan,
    hosts: plan.hosts.map((host) => ({
      ...host,
      apps: host.apps.map((app) => {
        const secret = opened.secrets.get(`${tree}/${host.host}/${app.app}`);
        return secret
          ? { ...app, files: app.files.map((file) => (secret.has(file.path) ? { ...file, secret: true as const } : file)) }
          : app;
      }),
    })),
  };
  return { plan: marked, ...opened };
}
