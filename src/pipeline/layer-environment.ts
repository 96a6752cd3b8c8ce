import { layerDirProblems, treeFaultProblems } from "../config/config-tree.js";
import { renderTemplate, type TemplateContext } from "../config/templates.js";
import type { SourceConfig, Vars } from "../core/config.js";
import { blobObject, treeObject, type GitObject } from "../core/git-objects.js";
import {
  ALL_LAYER,
  effectiveAppTree,
  GROUPS_DIR,
  hostLayers,
  overlayApp,
  TEMPLATE_SUFFIX,
  type AppLayer,
  type FileOrigin,
} from "../core/layers.js";
import type { Problem } from "../core/problems.js";
import { MODE_KIND, type Dir, type TreeEntry } from "../core/tree.js";
import { parseBuiltTree, readTreePair, remember, type ParsedTree, type TreeObjects } from "../git/tree-reader.js";

/** An environment's tree with its layers applied and its templates rendered: what is planned, deployed and recorded. */
export interface LayeredEnvironment {
  /** The effective tree: one directory per host, as if written out by hand. The source tree's own oid when nothing is layered. */
  oid: string;
  /** Reads the effective tree: the objects built here from memory, the rest from the source. */
  objects: TreeObjects;
  /** The objects that exist only in memory (rendered files, merged manifests, effective trees). */
  built: ReadonlyMap<string, GitObject>;
  /** For each host built from layers or templates, each file's origin by `app/path`. */
  origins: ReadonlyMap<string, ReadonlyMap<string, FileOrigin>>;
  problems: Problem[];
}

/**
 * Applies an environment's layers (`_all`, `_groups/<group>`) and renders its
 * templates, host by host. A host no shared layer reaches keeps its own
 * directory's oid when it runs it already (`live`) or holds no template, so
 * a flat fleet's unchanged hosts stay unread, as before layers.
 */
export async function layerEnvironment(
  source: TreeObjects,
  config: SourceConfig,
  environment: string,
  envOid: string,
  live: ReadonlyMap<string, string>,
): Promise<LayeredEnvironment> {
  const env = config.environments[environment]!;
  const unchanged: LayeredEnvironment = { oid: envOid, objects: source, built: new Map(), origins: new Map(), problems: [] };
  const top = await source.tree(envOid);
  // A tree read two ways is refused by validation, which names its faults: nothing is built on it.
  if (top.faults.length > 0) return unchanged;
  const problems: Problem[] = [];
  const built = new Map<string, GitObject>();
  const origins = new Map<string, Map<string, FileOrigin>>();
  const byName = new Map(top.entries.map((entry) => [entry.name, entry]));
  const layers = await readSharedLayers(source, config, env.tree, byName, problems);
  const groups = Object.entries(config.groups ?? {}).map(([group, { hosts }]) => [group, hosts] as const);

  const hosts = new Set(env.hosts ?? [...byName.keys()].filter((name) => !name.startsWith("_")));
  if (!env.hosts) {
    if (layers.has(ALL_LAYER)) for (const host of Object.keys(config.hosts)) hosts.add(host);
    for (const [group, members] of groups) if (layers.has(`${GROUPS_DIR}/${group}`)) for (const host of members) hosts.add(host);
  }

  const replaced = new Map<string, string>();
  for (const host of [...hosts].sort()) {
    const own = byName.get(host);
    const ownDir = own && MODE_KIND[own.mode] === "dir" ? own : undefined;
    const shared = hostLayers(host, groups)
      .slice(0, -1)
      .flatMap((layer) => (layers.has(layer) ? [{ layer, dir: layers.get(layer)! }] : []));
    if (own && !ownDir) continue;
    if (shared.length === 0 && (!ownDir || ownDir.oid === live.get(host) || !(await holdsTemplates(source, ownDir.oid)))) continue;
    const context: TemplateContext = {
      host: {
        name: host,
        address: config.hosts[host]?.address ?? "",
        groups: groups.filter(([, members]) => members.includes(host)).map(([g]) => g),
      },
      environment,
      vars: hostVars(config, environment, host),
    };
    // The same layers, own directory and values make the same host: a re-plan builds only the hosts whose inputs changed.
    const key = JSON.stringify([env.tree, shared.map(({ layer, dir }) => [layer, dir.oid]), ownDir?.oid, context]);
    const effective = await remember(
      builtHosts,
      key,
      async () => {
        const hostDir = ownDir ? await readLayer(source, ownDir.oid) : undefined;
        const layered = [...shared, ...(hostDir ? [{ layer: host, dir: hostDir }] : [])];
        const found = hostDir ? layerDirProblems(`${env.tree}/${host}`, hostDir) : [];
        return { ...(await buildHost(source, env.tree, layered, context, found)), problems: found };
      },
      KEPT_HOSTS,
    );
    problems.push(...effective.problems);
    for (const object of effective.objects) built.set(object.oid, object);
    origins.set(host, effective.origins);
    replaced.set(host, effective.oid);
  }
  if (replaced.size === 0 && !byName.has(ALL_LAYER) && !byName.has(GROUPS_DIR)) return { ...unchanged, problems };

  const entries = top.entries
    .filter((entry) => entry.name !== ALL_LAYER && entry.name !== GROUPS_DIR && !replaced.has(entry.name))
    .map((entry) => ({ ...entry, dir: MODE_KIND[entry.mode] === "dir" }));
  for (const [host, oid] of replaced) if (oid !== EMPTY_TREE) entries.push({ name: host, mode: "40000", oid, dir: true });
  const root = treeObject(entries);
  built.set(root.oid, root);
  return { oid: root.oid, objects: withBuilt(source, built), built, origins, problems };
}

/**
 * A problem found in the effective tree, named at the file it came from:
 * `_all/nginx/nginx.conf`, not each host's copy of it. A manifest merged
 * from several layers keeps the host's path and says which layers.
 */
export function atSource(layered: LayeredEnvironment, tree: string, problem: Problem): Problem {
  if (!problem.file.startsWith(`${tree}/`)) return problem;
  const [host = "", app = "", ...rest] = problem.file.slice(tree.length + 1).split("/");
  const origin = layered.origins.get(host)?.get(`${app}/${rest.join("/")}`);
  if (!origin || origin.layer === host) return problem;
  if (origin.layer.includes(" + "))
    return { ...problem, message: `${problem.message} (in ${host}'s manifest, merged from ${origin.layer})` };
  return { ...problem, file: `${tree}/${origin.layer}/${app}/${origin.template ?? rest.join("/")}` };
}

/** How many built hosts are kept, by their inputs: a fleet's worth, for the operator's next plan. */
const KEPT_HOSTS = 2048;
const builtHosts = new Map<string, Promise<{ oid: string; objects: GitObject[]; origins: Map<string, FileOrigin>; problems: Problem[] }>>();

/** git's empty tree: a host that the layers give nothing has no directory in the effective tree. */
const EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/** The shared layers present in the tree, by layer name (`_all`, `_groups/web`), read whole. */
async function readSharedLayers(
  source: TreeObjects,
  config: SourceConfig,
  tree: string,
  top: ReadonlyMap<string, TreeEntry>,
  problems: Problem[],
): Promise<Map<string, Dir>> {
  const layers = new Map<string, Dir>();
  const all = top.get(ALL_LAYER);
  if (all) {
    if (MODE_KIND[all.mode] !== "dir")
      problems.push({ file: `${tree}/${ALL_LAYER}`, message: `${ALL_LAYER} is a directory of apps (${ALL_LAYER}/<app>/...)` });
    else layers.set(ALL_LAYER, await readLayer(source, all.oid));
  }
  const groupsEntry = top.get(GROUPS_DIR);
  if (groupsEntry && MODE_KIND[groupsEntry.mode] !== "dir")
    problems.push({ file: `${tree}/${GROUPS_DIR}`, message: `${GROUPS_DIR} is a directory of groups (${GROUPS_DIR}/<group>/<app>/...)` });
  else if (groupsEntry) {
    const groupsTree = await source.tree(groupsEntry.oid);
    problems.push(...treeFaultProblems(`${tree}/${GROUPS_DIR}`, groupsTree.faults));
    for (const entry of groupsTree.entries) {
      const file = `${tree}/${GROUPS_DIR}/${entry.name}`;
      if (MODE_KIND[entry.mode] !== "dir")
        problems.push({ file, message: `${GROUPS_DIR} holds one directory per group (${GROUPS_DIR}/<group>/<app>/...)` });
      else if (!Object.hasOwn(config.groups ?? {}, entry.name))
        problems.push({ file, message: `directory for group ${entry.name}, which is not in groups: in tidemark.yaml` });
      else layers.set(`${GROUPS_DIR}/${entry.name}`, await readLayer(source, entry.oid));
    }
  }
  for (const [layer, dir] of layers) {
    problems.push(...layerDirProblems(`${tree}/${layer}`, dir));
    for (const [name, entry] of dir.entries ?? [])
      if (entry.kind !== "dir")
        problems.push({ file: `${tree}/${layer}/${name}`, message: `files belong in an app directory (${layer}/<app>/...)` });
  }
  return layers;
}

/**
 * A layer's directory of apps, read whole, with each app's manifest.json
 * content (the pair reader reads a manifest at `<one name>/<app>/manifest.json`).
 */
async function readLayer(source: TreeObjects, oid: string): Promise<Dir> {
  return (await readTreePair({ reader: source, oid, sizes: false }, undefined, "layer/"))[0]!;
}

/** One host's effective tree from its layers in order: its apps overlaid, its templates rendered. */
async function buildHost(
  source: TreeObjects,
  tree: string,
  layers: readonly AppLayer[],
  context: TemplateContext,
  problems: Problem[],
): Promise<{ oid: string; objects: GitObject[]; origins: Map<string, FileOrigin> }> {
  const objects: GitObject[] = [];
  const origins = new Map<string, FileOrigin>();
  const entries: Array<{ name: string; mode: string; oid: string; dir: boolean }> = [];
  const apps = new Set(
    layers.flatMap(({ dir }) => [...(dir.entries ?? [])].filter(([, entry]) => entry.kind === "dir").map(([app]) => app)),
  );
  const own = layers.at(-1)?.layer === context.host.name ? layers.at(-1)!.dir : undefined;
  // What the host's own directory holds besides apps is kept, for validation to name.
  for (const [name, entry] of own?.entries ?? [])
    if (entry.kind !== "dir") entries.push({ name, mode: entry.mode, oid: entry.oid, dir: false });
  for (const app of [...apps].sort()) {
    const appLayers = layers.flatMap(({ layer, dir }) => {
      const entry = dir.entries?.get(app);
      return entry?.kind === "dir" ? [{ layer, dir: entry }] : [];
    });
    const overlaid = overlayApp(tree, app, appLayers);
    problems.push(...overlaid.problems);
    objects.push(...overlaid.objects);
    for (const [path, file] of overlaid.files) {
      if (file.template) {
        const rendered = await renderOnce(source, `${tree}/${file.layer}/${app}/${file.template}`, file.oid, context);
        if ("problem" in rendered) {
          problems.push(rendered.problem);
          continue;
        }
        objects.push(rendered.object);
        overlaid.files.set(path, { ...file, oid: rendered.object.oid, size: rendered.object.body.length });
      }
      origins.set(`${app}/${path}`, { layer: file.layer, ...(file.template ? { template: file.template } : {}) });
    }
    const appTree = effectiveAppTree(overlaid.files);
    objects.push(...appTree.trees);
    if (overlaid.files.size > 0) entries.push({ name: app, mode: "40000", oid: appTree.oid, dir: true });
  }
  const host = treeObject(entries);
  objects.push(host);
  return { oid: host.oid, objects, origins };
}

/** Rendered templates, by template oid and context: the same inputs render the same bytes, so a re-plan renders only what changed. */
const renders = new Map<string, Promise<{ object: GitObject } | { problem: Problem }>>();

function renderOnce(source: TreeObjects, file: string, oid: string, context: TemplateContext) {
  return remember(
    renders,
    `${oid} ${file} ${JSON.stringify(context)}`,
    async () => {
      const rendered = renderTemplate(file, Buffer.from(await source.blob(oid)).toString("utf8"), context);
      return "problem" in rendered ? rendered : { object: blobObject(rendered.bytes) };
    },
    4096,
  );
}

/** Whether a directory holds a `.tmpl` file anywhere below it: a fact of the tree object, kept by oid. */
const templateHolders = new Map<string, Promise<boolean>>();

function holdsTemplates(source: TreeObjects, oid: string): Promise<boolean> {
  return remember(
    templateHolders,
    oid,
    async () => {
      const tree = await source.tree(oid);
      for (const entry of tree.entries) {
        const kind = MODE_KIND[entry.mode];
        if (kind === "dir" ? await holdsTemplates(source, entry.oid) : entry.name.endsWith(TEMPLATE_SUFFIX)) return true;
      }
      return false;
    },
    4096,
  );
}

/** A host's values: its environment's, then each of its groups' in the order `groups:` lists them, then its own; a name replaces whole. */
export function hostVars(config: SourceConfig, environment: string, host: string): Vars {
  const groups = Object.values(config.groups ?? {}).filter((group) => group.hosts.includes(host));
  return Object.assign(
    {},
    config.environments[environment]?.vars,
    ...groups.map((group) => group.vars ?? {}),
    config.hosts[host]?.vars ?? {},
  ) as Vars;
}

/** The source's objects, and those built in memory before them. */
function withBuilt(source: TreeObjects, built: ReadonlyMap<string, GitObject>): TreeObjects {
  const parsed = new Map<string, ParsedTree>();
  return {
    tree: async (oid) => {
      const object = built.get(oid);
      if (!object) return source.tree(oid);
      let tree = parsed.get(oid);
      if (!tree) parsed.set(oid, (tree = parseBuiltTree(object)));
      return tree;
    },
    blob: async (oid) => built.get(oid)?.body ?? source.blob(oid),
  };
}
