import type { AppTree, EnvTree, HostTree, Manifest, SourceConfig } from "../core/config.js";
import type { Problem } from "../core/problems.js";
import { AGE_SUFFIX, type Dir, type FileEntry, type OtherEntry, type PathFault, type TreeFault } from "../core/tree.js";
import { EMPTY_MANIFEST, MANIFEST_FILE, parseManifest, UNIT_NAME } from "./manifest.js";

/*
 * Reading and checking an environment's tree into the core's EnvTree,
 * HostTree and AppTree (core/config.ts). Pure, but it parses each app's
 * manifest.json with its schema, so it lives here, beside the schemas.
 */

const SYSTEMD_DIR = "systemd";
/** NAME_MAX of Linux file systems: a longer name passes git but fails on the host, mid-deployment. */
const MAX_NAME_BYTES = 255;

/**
 * Interprets the read parts of an environment's tree and checks them, all
 * problems at once. Names that merely look odd (spaces, quotes, `$(...)`, a
 * leading '-') are data and pass; what could escape a path or a shell is refused.
 */
export function readEnvTree(config: SourceConfig, environment: string, envDir: Dir | undefined): { tree: EnvTree; problems: Problem[] } {
  const env = config.environments[environment];
  if (!env) throw new Error(`unknown environment ${environment}`);
  const problems: Problem[] = [];
  const hosts = new Map<string, HostTree>();
  if (!envDir) {
    problems.push({
      file: env.tree,
      message: `the environment's tree directory does not exist at this commit (environments.${environment}.tree)`,
    });
    return { tree: { oid: "", hosts }, problems };
  }
  problems.push(...treeFaultProblems(env.tree, envDir.faults));
  const wanted = env.hosts ? new Set(env.hosts) : undefined;
  for (const [host, entry] of [...(envDir.entries ?? [])].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const file = `${env.tree}/${host}`;
    const bad = nameProblem(host);
    if (bad) {
      problems.push({ file, message: bad });
      continue;
    }
    if (entry.kind !== "dir") {
      problems.push({ file, message: "only host directories belong in an environment's tree" });
      continue;
    }
    if (!config.hosts[host]) {
      problems.push({ file, message: `directory for host ${host}, which is not in the inventory (hosts: in tidemark.yaml)` });
      continue;
    }
    if (wanted && !wanted.has(host)) continue;
    hosts.set(host, readHostTree(config, file, entry, problems));
  }
  for (const host of wanted ?? []) if (!hosts.has(host)) hosts.set(host, { oid: "", apps: new Map() });
  return { tree: { oid: envDir.oid, hosts }, problems };
}

/** Checks every environment's whole tree (read in full), each problem once. */
export function validateEnvironments(config: SourceConfig, envDirs: ReadonlyMap<string, Dir | undefined>): Problem[] {
  // Environments that share a tree would report its problems twice.
  return distinctProblems(
    Object.keys(config.environments).flatMap((name) => readEnvTree(config, name, envDirs.get(config.environments[name]!.tree)).problems),
  );
}

/** Each problem once, in the order first seen. */
export function distinctProblems(problems: readonly Problem[]): Problem[] {
  return [...new Map(problems.map((problem) => [JSON.stringify(problem), problem])).values()];
}

/** One host's apps, as read; problems are added to the list. */
export function readHostTree(config: SourceConfig, hostPath: string, dir: Dir, problems: Problem[]): HostTree {
  if (!dir.entries) return { oid: dir.oid };
  problems.push(...treeFaultProblems(hostPath, dir.faults));
  const apps = new Map<string, AppTree>();
  for (const [app, entry] of dir.entries) {
    const file = `${hostPath}/${app}`;
    const bad = nameProblem(app);
    if (bad) problems.push({ file, message: bad });
    else if (entry.kind !== "dir") problems.push({ file, message: "files belong in an app directory (<host>/<app>/...)" });
    else apps.set(app, readApp(config, file, entry, problems));
  }
  return { oid: dir.oid, apps };
}

function readApp(config: SourceConfig, appPath: string, dir: Dir, problems: Problem[]): AppTree {
  if (!dir.entries) return { oid: dir.oid };
  problems.push(...appTreeFaultProblems(appPath, dir));
  const files = new Map<string, FileEntry>();
  const ageNames = new Set<string>();
  const unread: string[] = [];
  let releaseBytes = 0;
  for (const [names, entry] of appFiles(dir)) {
    const path = names.join("/");
    const file = `${appPath}/${path}`;
    const bad = names.map(nameProblem).find(Boolean);
    if (bad) {
      problems.push({ file, message: bad });
      continue;
    }
    if (entry.kind === "dir") {
      unread.push(`${path}/`);
      continue;
    }
    if (entry.kind !== "file") {
      problems.push({
        file,
        message:
          entry.kind === "symlink"
            ? "symlinks are not deployed (mode 120000); declare host symlinks in manifest.json's symlinks"
            : "submodules are not deployed (mode 160000); vendor the files instead",
      });
      continue;
    }
    if (entry.size !== undefined && entry.size > config.limits.maxFileBytes)
      problems.push({ file, message: `${entry.size} bytes, over the ${config.limits.maxFileBytes}-byte limit (limits.maxFileBytes)` });
    releaseBytes += entry.size ?? 0;
    const age = path.endsWith(AGE_SUFFIX) ? path.slice(0, -AGE_SUFFIX.length) : undefined;
    if (age !== undefined && (age === "" || age.endsWith("/"))) {
      problems.push({
        file,
        message: `an age file needs a name before ${AGE_SUFFIX}: ${path.slice(0, -AGE_SUFFIX.length)}x${AGE_SUFFIX} deploys as x`,
      });
      continue;
    }
    // An age file and a plain file of the name it deploys as would both land at one path on the host.
    if (files.has(age ?? path) || (age === undefined && ageNames.has(path)))
      problems.push({
        file: `${appPath}/${age ?? path}`,
        message: `both ${age ?? path} and ${age ?? path}${AGE_SUFFIX} are in the app: the host gets one file of that name; keep one`,
      });
    if (age !== undefined) ageNames.add(age);
    files.set(age ?? path, age !== undefined ? { ...entry, age: true } : entry);
  }
  if (releaseBytes > config.limits.maxReleaseBytes)
    problems.push({
      file: appPath,
      message: `the release is ${releaseBytes} bytes, over the ${config.limits.maxReleaseBytes}-byte limit (limits.maxReleaseBytes)`,
    });
  for (const path of files.keys()) {
    if (path.startsWith(`${SYSTEMD_DIR}/`) && !isUnitFile(path.slice(SYSTEMD_DIR.length + 1))) {
      problems.push({
        file: `${appPath}/${path}`,
        message: "systemd/ holds unit files (e.g. web.service) and drop-ins (web.service.d/*.conf) only",
      });
    }
  }
  const manifestFile = files.get(MANIFEST_FILE);
  let manifest = EMPTY_MANIFEST;
  if (manifestFile) {
    if (manifestFile.content === undefined) throw new Error(`${appPath}/${MANIFEST_FILE} was not read`);
    const parsed = parseManifest(`${appPath}/${MANIFEST_FILE}`, manifestFile.content);
    problems.push(...parsed.problems);
    manifest = parsed.manifest ?? EMPTY_MANIFEST;
    // A path below a directory left unread is a file the other side has as well: checked when it was read.
    const known = (path: string) => files.has(path) || unread.some((dir) => path.startsWith(dir));
    problems.push(...symlinkProblems(config, `${appPath}/${MANIFEST_FILE}`, manifest, known));
    problems.push(...hookProblems(`${appPath}/${MANIFEST_FILE}`, manifest, files, known));
    for (const path of Object.keys(manifest.secrets))
      if (!known(path))
        problems.push({
          file: `${appPath}/${MANIFEST_FILE}`,
          field: `secrets[${JSON.stringify(path)}]`,
          message: `${JSON.stringify(path)} is not a file of this app (an age file is named as it deploys, without ${AGE_SUFFIX})`,
        });
  }
  return { oid: dir.oid, files, manifest };
}

/** Every file below an app's dir, with the names on its way: checked one by one, as a name with a '/' in it (a crafted tree) reads as two once joined. */
function* appFiles(dir: Dir, names: string[] = []): Generator<[string[], FileEntry | OtherEntry | Dir]> {
  for (const [name, entry] of dir.entries ?? []) {
    // A directory left unread (the same on the side a plan compares with) is yielded as itself: its files are as they were.
    if (entry.kind === "dir") yield* entry.entries ? appFiles(entry, [...names, name]) : [[[...names, name], entry] as [string[], Dir]];
    else yield [[...names, name], entry];
  }
}

/** The faults of an app's tree and of every tree below it. */
function appTreeFaultProblems(path: string, dir: Dir): Problem[] {
  const below = [...(dir.entries ?? [])].flatMap(([name, entry]) =>
    entry.kind === "dir" ? appTreeFaultProblems(`${path}/${name}`, entry) : [],
  );
  return [...treeFaultProblems(path, dir.faults), ...below];
}

/**
 * What is wrong with the names and tree objects below a layer's app dir:
 * checked before its files are overlaid, since the effective tree built from
 * them is well-formed and would hide a crafted one.
 */
export function layerDirProblems(path: string, dir: Dir): Problem[] {
  return [
    ...treeFaultProblems(path, dir.faults),
    ...[...(dir.entries ?? [])].flatMap(([name, entry]) => {
      const bad = nameProblem(name);
      if (bad) return [{ file: `${path}/${name}`, message: bad }];
      return entry.kind === "dir" ? layerDirProblems(`${path}/${name}`, entry) : [];
    }),
  ];
}

/**
 * A malformed tree object's faults, each as a problem at the path of the
 * entry it concerns (`dir` is the tree's own path, "" for the root).
 */
export function treeFaultProblems(dir: string, faults: readonly TreeFault[] = []): Problem[] {
  return faults.map((fault) => ({
    file: dir === "" ? fault.name : `${dir}/${fault.name}`,
    message: treeFaultMessage(dir === "" ? "." : dir, fault),
  }));
}

/** Faults met on the way down a path, each at the path of the entry it concerns. */
export function pathFaultProblems(faults: readonly PathFault[]): Problem[] {
  return faults.flatMap(({ dir, fault }) => treeFaultProblems(dir, [fault]));
}

/** What each fault means for a deployment, and how to be rid of it: git's index writes none of them. */
function treeFaultMessage(dir: string, fault: TreeFault): string {
  const rewrite = `commit the directory again through git's index (git rm -r --cached -- ${dir}; git add -- ${dir}), which writes each name once, in order, with a mode git reads`;
  switch (fault.kind) {
    case "duplicate":
      return `two entries of this name in one git tree (git fsck: duplicateEntries): only one of them could be deployed; ${rewrite}`;
    case "unsorted":
      return `an entry out of git's order in its tree (git fsck: treeNotSorted): git and Tidemark could find different entries; ${rewrite}`;
    case "mode":
      return `mode ${fault.mode}, not one git writes (git fsck: badFilemode): git and Tidemark could deploy it differently (files are 100644 or 100755, directories 40000); ${rewrite}`;
    case "encoding":
      return `a name that is not UTF-8 (${JSON.stringify(fault.name)} as read): it would reach the host under another name; rename it in UTF-8`;
  }
}

function isUnitFile(path: string): boolean {
  const parts = path.split("/");
  if (parts.length === 1) return UNIT_NAME.test(parts[0] ?? "");
  return (
    parts.length === 2 &&
    UNIT_NAME.test((parts[0] ?? "").replace(/\.d$/, "")) &&
    (parts[0] ?? "").endsWith(".d") &&
    (parts[1] ?? "").endsWith(".conf")
  );
}

/** A hook runs a file of its app, executable, as git records it; names are unique; the choices that only mean something in some phases stay there. */
function hookProblems(file: string, manifest: Manifest, files: Map<string, FileEntry>, known: (path: string) => boolean): Problem[] {
  const problems: Problem[] = [];
  const seen = new Set<string>();
  manifest.hooks.forEach((hook, i) => {
    const at = (field: string) => `hooks[${i}].${field}`;
    if (seen.has(hook.name))
      problems.push({ file, field: at("name"), message: `a second hook named ${JSON.stringify(hook.name)} in this app` });
    seen.add(hook.name);
    const target = files.get(hook.run);
    if (!known(hook.run)) problems.push({ file, field: at("run"), message: `${JSON.stringify(hook.run)} is not a file of this app` });
    else if (target && target.mode !== "100755")
      problems.push({
        file,
        field: at("run"),
        message: `${JSON.stringify(hook.run)} is not executable in git: git update-index --chmod=+x ${hook.run}`,
      });
    const activates = hook.phase === "pre-activate" || hook.phase === "post-activate";
    if (hook.onFailure === "warn" && hook.phase !== "post-activate")
      problems.push({
        file,
        field: at("onFailure"),
        message: "only a post-activate hook can warn: any other hook's failure stops what it guards",
      });
    if (hook.on === "once" && !activates)
      problems.push({
        file,
        field: at("on"),
        message: "on: once is for pre-activate and post-activate hooks: a rollback runs on each host it reaches",
      });
    if (hook.irreversible && !activates)
      problems.push({
        file,
        field: at("irreversible"),
        message: "irreversible marks an activate hook that has no down; a rollback hook is the down",
      });
  });
  return problems;
}

function symlinkProblems(config: SourceConfig, file: string, manifest: Manifest, known: (path: string) => boolean): Problem[] {
  const problems: Problem[] = [];
  for (const [link, target] of Object.entries(manifest.symlinks)) {
    const field = `symlinks[${JSON.stringify(link)}]`;
    const normal =
      link.startsWith("/") &&
      !link.endsWith("/") &&
      !link
        .split("/")
        .slice(1)
        .some((part) => part === "" || part === "." || part === ".." || nameProblem(part) !== undefined);
    if (!normal)
      problems.push({
        file,
        field,
        message: "a symlink is placed at an absolute, normalized host path (no '//', '.', '..', control characters or trailing '/')",
      });
    else if (link.startsWith("/etc/systemd/") || !config.limits.symlinkRoots.some((root) => link.startsWith(root))) {
      problems.push({
        file,
        field,
        message: `symlinks may be placed under ${config.limits.symlinkRoots.join(", ")} only, never into /etc/systemd (units go in the app's systemd/ directory)`,
      });
    }
    if (!known(target)) problems.push({ file, field, message: `points to ${JSON.stringify(target)}, which is not a file of this app` });
  }
  return problems;
}

/** Why a tree entry's name is refused, or undefined if it is fine. */
export function nameProblem(name: string): string | undefined {
  if (name === "") return "empty name";
  if (name === "." || name === "..") return `the name ${JSON.stringify(name)} could escape its directory`;
  if (name.includes("/")) return "a name that contains '/' (a crafted tree)";
  if (name.includes("\0")) return "a name that contains a NUL byte";
  if ([...name].some((char) => char.charCodeAt(0) < 0x20 || char.charCodeAt(0) === 0x7f))
    return `a name with a control character or newline: ${JSON.stringify(name)}`;
  if (name.toLowerCase() === ".git") return "a .git entry inside a config tree";
  const bytes = Buffer.byteLength(name, "utf8");
  if (bytes > MAX_NAME_BYTES) return `a name of ${bytes} bytes, longer than a Linux file name can be (${MAX_NAME_BYTES})`;
  return undefined;
}
