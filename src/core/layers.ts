import { blobObject, buildTrees, type GitObject, type TreeFile } from "./git-objects.js";
import type { Plan } from "./plan.js";
import type { Problem } from "./problems.js";
import { AGE_SUFFIX, flattenFiles, type Dir, type FileEntry } from "./tree.js";

/**
 * Layers of an environment's config tree: `_all/<app>/...` for every host,
 * `_groups/<group>/<app>/...` for a group's hosts, `<host>/<app>/...` for
 * one host. A host's effective app is the file-by-file overlay of its layers
 * in order (later wins); `manifest.json` merges by top-level field, and a
 * layer's manifest may `remove` paths that earlier layers gave. `X.tmpl`
 * stands for `X`, rendered per host. Pure: the adapter reads the layers'
 * trees and renders the templates.
 */

export const ALL_LAYER = "_all";
export const GROUPS_DIR = "_groups";
export const TEMPLATE_SUFFIX = ".tmpl";
const MANIFEST = "manifest.json";

/** A host's layers, in the order they apply: `_all`, its groups in the order `groups:` lists them, the host itself. */
export function hostLayers(host: string, groups: ReadonlyArray<readonly [string, readonly string[]]>): string[] {
  return [ALL_LAYER, ...groups.filter(([, hosts]) => hosts.includes(host)).map(([group]) => `${GROUPS_DIR}/${group}`), host];
}

/** Where a file of a host's effective app came from: its layer, and the template it was rendered from. */
export interface FileOrigin {
  layer: string;
  template?: string;
}

/** A plan whose files say where each came from, for the hosts built from layers or templates. */
export function withOrigins(plan: Plan, origins: ReadonlyMap<string, ReadonlyMap<string, FileOrigin>>): Plan {
  if (origins.size === 0) return plan;
  return {
    ...plan,
    hosts: plan.hosts.map((host) => {
      const of = origins.get(host.host);
      if (!of) return host;
      return {
        ...host,
        apps: host.apps.map((app) => ({
          ...app,
          files: app.files.map((file) => ({
            ...file,
            // An age file's origin is known under its name in git.
            ...(file.change === "removed" ? {} : (of.get(`${app.app}/${file.path}`) ?? of.get(`${app.app}/${file.path}${AGE_SUFFIX}`))),
          })),
        })),
      };
    }),
  };
}

/** Where a file came from, for people: nothing for a host's own plain file, else `← _groups/web` or `← _all, rendered`. */
export function originNote(host: string, file: { layer?: string; template?: string }): string {
  if (!file.layer || (file.layer === host && !file.template)) return "";
  return `← ${file.layer}${file.template ? ", rendered" : ""}`;
}

/** One layer's directory of an app, read whole. */
export interface AppLayer {
  /** `_all`, `_groups/<group>` or the host's name: the layer's path in the environment's tree. */
  layer: string;
  dir: Dir;
}

/** A file of a host's effective app, with the layer it came from. */
export interface EffectiveFile extends TreeFile {
  size?: number;
  layer: string;
  /** The template's path in its layer (`X.tmpl`), when the file is rendered from one: `oid` is the template's until it is. */
  template?: string;
}

export interface EffectiveApp {
  /** By path inside the app, without `.tmpl`. */
  files: Map<string, EffectiveFile>;
  /** Where `manifest.json` came from: one layer's file as it is, or several merged (its layer reads `a + b`). */
  problems: Problem[];
  /** Objects that exist in no layer: a merged manifest's blob. */
  objects: GitObject[];
}

/**
 * Overlays an app's layers, file by file. A manifest's `remove` lists paths
 * (a file, or a directory and all below it) that earlier layers gave and
 * this one takes away; it applies before the layer's own files, so a layer
 * can also replace a directory whole. `envTree` names files in problems.
 */
export function overlayApp(envTree: string, app: string, layers: readonly AppLayer[]): EffectiveApp {
  const files = new Map<string, EffectiveFile>();
  const problems: Problem[] = [];
  const manifests: Array<{ layer: string; entry: FileEntry; fields: Record<string, unknown> }> = [];
  for (const { layer, dir } of layers) {
    const at = (path: string) => `${envTree}/${layer}/${app}/${path}`;
    const { own, manifest, problems: found } = layerFiles(envTree, app, layer, dir);
    problems.push(...found);
    const removed = manifest?.fields.remove;
    if (removed !== undefined) {
      if (!Array.isArray(removed) || !removed.every((path): path is string => typeof path === "string" && path !== ""))
        problems.push({ file: at(MANIFEST), field: "remove", message: "remove lists paths inside the app, as strings" });
      else
        for (const path of removed) {
          if (path === MANIFEST) {
            if (manifests.length === 0)
              problems.push({
                file: at(MANIFEST),
                field: "remove",
                message: `no layer before ${layer} has a ${MANIFEST}: nothing to remove`,
              });
            manifests.length = 0;
            continue;
          }
          const prefix = `${path.replace(/\/+$/, "")}/`;
          const gone = [...files.keys()].filter((inherited) => inherited === path || inherited.startsWith(prefix));
          if (gone.length === 0)
            problems.push({
              file: at(MANIFEST),
              field: "remove",
              message: `${JSON.stringify(path)} is not given by a layer before ${layer} (${earlier(layers, layer)}): nothing to remove`,
            });
          for (const inherited of gone) files.delete(inherited);
        }
    }
    for (const [path, file] of own) files.set(path, file);
    if (manifest) manifests.push({ layer, ...manifest });
  }
  const objects: GitObject[] = [];
  const merged = mergeManifests(manifests);
  if (merged) {
    files.set(MANIFEST, merged.file);
    if (merged.object) objects.push(merged.object);
  }
  return { files, problems, objects };
}

/** One layer's files of an app, by path without `.tmpl`, and its manifest: the same for every host the layer reaches, so read once per layer. */
interface LayerFiles {
  key: string;
  own: Map<string, EffectiveFile>;
  manifest?: { entry: FileEntry; fields: Record<string, unknown> };
  problems: Problem[];
}
const layerFilesRead = new WeakMap<Dir, LayerFiles>();

function layerFiles(envTree: string, app: string, layer: string, dir: Dir): LayerFiles {
  const key = `${envTree}/${layer}/${app}`;
  const kept = layerFilesRead.get(dir);
  if (kept?.key === key) return kept;
  const at = (path: string) => `${key}/${path}`;
  const problems: Problem[] = [];
  const own = new Map<string, EffectiveFile>();
  let manifest: { entry: FileEntry; fields: Record<string, unknown> } | undefined;
  for (const [path, entry] of flattenFiles(dir)) {
    if (entry.kind !== "file") {
      problems.push({
        file: at(path),
        message:
          entry.kind === "symlink"
            ? "symlinks are not deployed (mode 120000); declare host symlinks in manifest.json's symlinks"
            : "submodules are not deployed (mode 160000); vendor the files instead",
      });
      continue;
    }
    if (path === MANIFEST) {
      const fields = manifestFields(at(path), entry, problems);
      if (fields) manifest = { entry, fields };
      continue;
    }
    if (path === `${MANIFEST}${TEMPLATE_SUFFIX}`) {
      problems.push({
        file: at(path),
        message: `${MANIFEST} is merged across layers, not rendered: write it without ${TEMPLATE_SUFFIX}`,
      });
      continue;
    }
    const template = path.endsWith(TEMPLATE_SUFFIX) && path.length > TEMPLATE_SUFFIX.length && !path.endsWith(`/${TEMPLATE_SUFFIX}`);
    const target = template ? path.slice(0, -TEMPLATE_SUFFIX.length) : path;
    if (own.has(target)) {
      problems.push({ file: at(path), message: `both ${target} and ${target}${TEMPLATE_SUFFIX} in one layer: keep one of them` });
      continue;
    }
    own.set(target, {
      oid: entry.oid,
      mode: entry.mode,
      ...(entry.size !== undefined && !template ? { size: entry.size } : {}),
      layer,
      ...(template ? { template: path } : {}),
    });
  }
  const read: LayerFiles = { key, own, ...(manifest ? { manifest } : {}), problems };
  layerFilesRead.set(dir, read);
  return read;
}

/**
 * The effective manifest: one layer's file byte for byte when it is the only
 * one and removes nothing; else the fields merged (a later layer's field
 * replaces an earlier one's whole), without `remove`, as canonical JSON.
 */
function mergeManifests(
  manifests: ReadonlyArray<{ layer: string; entry: FileEntry; fields: Record<string, unknown> }>,
): { file: EffectiveFile; object?: GitObject } | undefined {
  const only = manifests.length === 1 ? manifests[0]! : undefined;
  if (only && only.fields.remove === undefined)
    return {
      file: {
        oid: only.entry.oid,
        mode: only.entry.mode,
        ...(only.entry.size !== undefined ? { size: only.entry.size } : {}),
        layer: only.layer,
      },
    };
  const fields: Record<string, unknown> = {};
  for (const manifest of manifests) for (const [key, value] of Object.entries(manifest.fields)) if (key !== "remove") fields[key] = value;
  if (Object.keys(fields).length === 0) return undefined;
  const object = blobObject(Buffer.from(`${JSON.stringify(fields, null, 2)}\n`));
  const layer = [
    ...new Set(manifests.filter((manifest) => Object.keys(manifest.fields).some((key) => key !== "remove")).map((m) => m.layer)),
  ];
  return { file: { oid: object.oid, mode: "100644", size: object.body.length, layer: layer.join(" + ") }, object };
}

function manifestFields(file: string, entry: FileEntry, problems: Problem[]): Record<string, unknown> | undefined {
  if (entry.content === undefined) throw new Error(`${file} was not read`);
  let fields: unknown;
  try {
    fields = JSON.parse(entry.content);
  } catch (error) {
    problems.push({ file, message: `not JSON: ${error instanceof Error ? error.message : String(error)}` });
    return undefined;
  }
  if (fields === null || typeof fields !== "object" || Array.isArray(fields)) {
    problems.push({ file, message: "a manifest is a JSON object" });
    return undefined;
  }
  return fields as Record<string, unknown>;
}

const earlier = (layers: readonly AppLayer[], layer: string) =>
  layers
    .slice(
      0,
      layers.findIndex((each) => each.layer === layer),
    )
    .map((each) => each.layer)
    .join(", ") || "none";

/** An effective app's tree objects, once every template has its rendered oid. */
export function effectiveAppTree(files: ReadonlyMap<string, EffectiveFile>): { oid: string; trees: GitObject[] } {
  return buildTrees(new Map([...files].map(([path, file]) => [path, { oid: file.oid, mode: file.mode }])));
}
