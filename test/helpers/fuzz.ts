import { createHash } from "node:crypto";
import fc from "fast-check";
import { stringify } from "yaml";
import { validateEnvironments } from "../../src/config/config-tree.js";
import { MANIFEST_FILE, parseManifest } from "../../src/config/manifest.js";
import { CONFIG_FILE, parseSourceConfig } from "../../src/config/source-config.js";
import type { Problem } from "../../src/core/problems.js";
import type { Dir, Entry } from "../../src/core/tree.js";

/**
 * Property-based fuzzing of what a user can put in front of Tidemark: the
 * targets for tidemark.yaml, manifest.json and tree names live here, pure,
 * for the quick suite (test/unit/fuzz.test.ts) and the campaign
 * (test/campaign/fuzz.ts, which adds webhooks against `tidemark serve`).
 */

/** A rule a fuzzed input broke: its kind (one line), and what showed it. */
export interface Violation {
  kind: string;
  detail: string;
}

export interface FuzzTarget<T> {
  name: string;
  arbitrary: fc.Arbitrary<T>;
  /** Every rule the input breaks; never throws (a throw is itself a violation, counted by the runner). */
  check: (value: T) => Violation[] | Promise<Violation[]>;
}

export interface FuzzOutcome {
  target: string;
  runs: number;
  /** By kind: how many inputs broke it, and the smallest input fast-check found that does. */
  violations: Map<string, { count: number; example: string }>;
}

/**
 * Runs a target over `numRuns` inputs from `seed`, counting every violation
 * rather than stopping at the first; then, for each kind seen, runs again
 * from the same seed and lets fast-check shrink the input that shows it.
 */
export async function fuzzTarget<T>(
  target: FuzzTarget<T>,
  seed: number,
  numRuns: number,
  shrinkMs = 5000,
  afterRuns: () => void = () => undefined,
): Promise<FuzzOutcome> {
  const violations = new Map<string, { count: number; example: string }>();
  const judge = async (value: T): Promise<Violation[]> => {
    try {
      return await target.check(value);
    } catch (error) {
      return [
        {
          kind: `the check threw ${error instanceof Error ? error.name : typeof error}`,
          detail: error instanceof Error ? (error.stack ?? error.message) : String(error),
        },
      ];
    }
  };
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(target.arbitrary, async (value) => {
      runs++;
      for (const violation of await judge(value)) {
        const seen = violations.get(violation.kind);
        if (seen) seen.count++;
        else violations.set(violation.kind, { count: 1, example: `${violation.detail}; input: ${show(value)}` });
      }
    }),
    { seed, numRuns },
  );
  afterRuns();
  for (const [kind, seen] of violations) {
    let detail = "";
    const shrunk = await fc.check(
      fc.asyncProperty(target.arbitrary, async (value) => {
        const found = (await judge(value)).find((violation) => violation.kind === kind);
        if (found) detail = found.detail;
        return !found;
      }),
      // Shrinking can take long on chained arbitraries: the smallest input found within the limit will do.
      { seed, numRuns, interruptAfterTimeLimit: shrinkMs },
    );
    if (shrunk.failed && shrunk.counterexample !== null) seen.example = `${detail}; input: ${show(shrunk.counterexample[0])}`;
  }
  return { target: target.name, runs, violations };
}

/** An input as fast-check prints it, cut to a readable length. */
export function show(value: unknown, max = 600): string {
  const text = fc.stringify(value);
  return text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text;
}

// ---------------------------------------------------------------- problems

/** Messages that say something is wrong without saying what. */
const VAGUE = /^(Invalid input|Invalid key in record|Invalid element|Invalid value|Invalid)$/;
/** A JavaScript error that leaked into a message: the validation itself went wrong. */
const LEAKED = /Maximum call stack|is not a function|Cannot read propert|is not iterable|\[object Object\]|is not defined/;

/** The rules every problem keeps: it names a file (one `fileOk` accepts), a field if any, and what is wrong. */
export function problemViolations(problems: readonly Problem[], fileOk: (file: string) => boolean): Violation[] {
  const found: Violation[] = [];
  for (const problem of problems) {
    const shown = JSON.stringify(problem);
    if (typeof problem.file !== "string" || problem.file === "" || !fileOk(problem.file))
      found.push({ kind: "a problem that does not name its file", detail: shown });
    if (problem.field !== undefined && (typeof problem.field !== "string" || problem.field === ""))
      found.push({ kind: "a problem with an empty field", detail: shown });
    if (typeof problem.message !== "string" || problem.message.trim() === "" || VAGUE.test(problem.message.trim()))
      found.push({ kind: "a problem that does not say what is wrong", detail: shown });
    else if (LEAKED.test(problem.message)) found.push({ kind: "a problem that is a JavaScript error", detail: shown });
  }
  return found;
}

/** Whether some problem is about `field` (or something inside it), and mentions `mention` if given. */
function names(problems: readonly Problem[], field: string, mention?: string): boolean {
  return problems.some((problem) => {
    const at = problem.field ?? "";
    const inside = at === field || at.startsWith(`${field}.`) || at.startsWith(`${field}[`);
    // A field names an odd key as JSON does (symlinks["/etc/a\nb"]).
    return (
      inside &&
      (mention === undefined || [mention, JSON.stringify(mention).slice(1, -1)].some((text) => `${at} ${problem.message}`.includes(text)))
    );
  });
}

// ---------------------------------------------------------------- names

/**
 * Names that must be refused in a config tree, written from what a host's
 * file system and shell take (not from the code under test): empty, `.`,
 * `..`, a '/', a control character, `.git`, or longer than a Linux file
 * name can be (255 bytes).
 */
export function mustRefuseName(name: string): boolean {
  return (
    name === "" ||
    name === "." ||
    name === ".." ||
    name.includes("/") ||
    [...name].some((char) => char.charCodeAt(0) < 0x20 || char.charCodeAt(0) === 0x7f) ||
    name.toLowerCase() === ".git" ||
    Buffer.byteLength(name) > 255
  );
}

const plainName = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,10}$/);

/** Names that look odd: unicode, spaces, leading dashes, dots, shell syntax, control characters, very long ones. */
export const oddName: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    "",
    ".",
    "..",
    "...",
    ". ",
    " ..",
    ".git",
    ".GIT",
    ".Git",
    ".gitignore",
    "-rf",
    "--",
    "-",
    " ",
    "a b",
    " lead",
    "trail ",
    "$(touch x)",
    "`id`",
    "it's",
    '"q"',
    "~",
    "*",
    "?",
    "\\",
    "a\\b",
    "a/b",
    "../x",
    "/etc",
    "a//b",
    "con",
    "nul",
    "manifest.json",
    "systemd",
    "__proto__",
    "constructor",
    "toString",
    "hasOwnProperty",
    "\u202e",
    "\u200b",
    "ü",
    "日本",
    "🙂",
    "a\u0000b",
    "tab\there",
    "two\nlines",
    "cr\r",
    "esc\u001b[2J",
    "del\u007f",
  ),
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 }),
  fc.string({ unit: "binary", minLength: 1, maxLength: 12 }),
  fc.string({ unit: fc.constantFrom("a", ".", "-", " ", "/", "\n", "\t", "\u0000", "\u001b", "é", "\u200b"), minLength: 1, maxLength: 8 }),
  // Around the 255-byte limit of a Linux file name, in one- to four-byte characters.
  fc.string({ unit: fc.constantFrom("a", "é", "日", "🙂"), minLength: 60, maxLength: 300 }),
);

// ---------------------------------------------------------------- tidemark.yaml

const envName = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/);
const hostName = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/);
const refName = fc.stringMatching(/^[a-z0-9][a-z0-9._/-]{0,15}$/);
const treePath = fc.array(fc.stringMatching(/^[a-z0-9_-]{1,8}$/), { minLength: 1, maxLength: 3 }).map((parts) => parts.join("/"));
const hostKey = fc
  .tuple(
    fc.constantFrom("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"),
    fc.base64String({ minLength: 4, maxLength: 68 }),
    fc.constantFrom("", " root@web", " a comment"),
  )
  .map(([type, key, comment]) => `${type} ${key}${comment}`);

const track = fc.oneof(
  fc.record({ branch: refName }),
  fc.record({ tag: refName }),
  fc.record({ tags: fc.constantFrom("v*", "release-*", "*"), prerelease: fc.boolean() }, { requiredKeys: ["tags"] }),
);
const host = fc.record(
  {
    address: fc.oneof(fc.ipV4(), fc.domain()),
    port: fc.integer({ min: 1, max: 65535 }),
    user: fc.stringMatching(/^[a-z_][a-z0-9_-]{0,8}$/),
    hostKey,
  },
  { requiredKeys: ["address"] },
);
const rollout = fc.record(
  {
    maxParallel: fc.integer({ min: 1, max: 100 }),
    canary: fc.nat(5),
    maxFailures: fc.nat(5),
    onFailure: fc.constantFrom("rollback-host", "rollback-all", "halt"),
  },
  { requiredKeys: [] },
);
const limits = fc.record(
  {
    maxFileBytes: fc.integer({ min: 1, max: 2 ** 31 }),
    maxReleaseBytes: fc.integer({ min: 1, max: 2 ** 31 }),
    symlinkRoots: fc.array(fc.stringMatching(/^\/[a-z]{1,6}\/$/), { maxLength: 3 }),
  },
  { requiredKeys: [] },
);

type Json = null | boolean | number | string | Json[] | JsonObject;
interface JsonObject {
  [key: string]: Json;
}
/** The object at a place a breaker knows holds one. */
const obj = (value: Json | undefined): JsonObject => value as JsonObject;
/** Sets a key as a parsed file would have it: `__proto__` too is a key like any other in YAML or JSON. */
const put = (target: JsonObject | Json[], key: string | number, value: Json) =>
  Object.defineProperty(target, key, { value, enumerable: true, configurable: true, writable: true });

/** A valid tidemark.yaml as data: environments whose `hosts` come from the inventory. */
export const validConfig: fc.Arbitrary<JsonObject> = fc.uniqueArray(hostName, { minLength: 1, maxLength: 4 }).chain((hosts) =>
  fc
    .record(
      {
        environments: fc
          .uniqueArray(envName, { minLength: 1, maxLength: 3 })
          .chain((names) =>
            fc.tuple(
              ...names.map((name) =>
                fc
                  .record({ track, tree: treePath, hosts: fc.subarray(hosts) }, { requiredKeys: ["track", "tree"] })
                  .map((env) => [name, env] as const),
              ),
            ),
          )
          .map((entries) => Object.fromEntries(entries)),
        hosts: fc.tuple(...hosts.map((name) => host.map((value) => [name, value] as const))).map((entries) => Object.fromEntries(entries)),
        rollout,
        limits,
      },
      { requiredKeys: ["environments", "hosts"] },
    )
    .map((config) => config as JsonObject),
);

/** What a case must give: accepted, refused with a problem at `field` (mentioning `mention`), or anything well-formed. */
export type Expectation = { valid: true } | { field: string; mention?: string } | { unknown: true };

export interface ConfigCase {
  how: string;
  text: string;
  expect: Expectation;
}

/** One change that makes a valid config invalid, and where the problem must be. */
type Breaker = (config: JsonObject, pick: number, odd: string) => { how: string; field: string; mention?: string };

const at = <T>(items: readonly T[], pick: number): T => items[pick % items.length]!;
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** A host's or an environment's name in a config, and its entry. */
function entryOf(config: JsonObject, where: "hosts" | "environments", pick: number): [string, JsonObject] {
  const map = obj(config[where]);
  const name = at(Object.keys(map), pick);
  return [name, obj(map[name])];
}

const BREAKERS: Breaker[] = [
  (config, pick) => {
    const [name, entry] = entryOf(config, "hosts", pick);
    delete entry.address;
    return { how: "a host without its address", field: `hosts.${name}.address` };
  },
  (config, pick) => {
    const [name, entry] = entryOf(config, "hosts", pick);
    entry.port = at([0, 65536, 1.5, -22, "22", null, true], pick);
    return { how: "a port out of range or of the wrong type", field: `hosts.${name}.port` };
  },
  (config, pick) => {
    const [name, entry] = entryOf(config, "hosts", pick);
    entry.hostKey = at(["AAAAC3Nza", "ssh-ed25519", "ssh-dss AAAA", ""], pick);
    return { how: "a host key that is no OpenSSH key line", field: `hosts.${name}.hostKey` };
  },
  (config, pick) => {
    const [name, entry] = entryOf(config, "environments", pick);
    entry.tree = at(["../x", "/etc", "a/./b", "a/../../b", "", ".."], pick);
    return { how: "a tree that escapes the repository", field: `environments.${name}.tree` };
  },
  (config, pick) => {
    const [name, entry] = entryOf(config, "environments", pick);
    entry.track = at<Json>([{ branch: "main", tag: "x" }, {}, { branch: "" }, { commit: "abc" }, "main"], pick);
    return { how: "a tracking rule that is not exactly one rule", field: `environments.${name}.track` };
  },
  (config, pick) => {
    const [name, entry] = entryOf(config, "environments", pick);
    delete entry.track;
    return { how: "an environment without a tracking rule", field: `environments.${name}.track` };
  },
  (config, pick) => {
    const key = at(["colour", "hostname", "branch", "parallel"], pick);
    const where = at(["", "environments", "hosts", "rollout"] as const, pick >> 2);
    if (where === "") {
      config[key] = 1;
      return { how: "an unknown key at the top", field: "(top level)", mention: key };
    }
    if (where === "rollout") {
      config.rollout = { ...obj(config.rollout ?? {}), [key]: 1 };
      return { how: "an unknown key in rollout", field: "rollout", mention: key };
    }
    const [name, entry] = entryOf(config, where, pick);
    entry[key] = 1;
    return { how: `an unknown key in ${where}`, field: `${where}.${name}`, mention: key };
  },
  (config, _pick, odd) => {
    const name = SAFE_NAME.test(odd) ? `-${odd}` : odd;
    put(obj(config.hosts), name, { address: "192.0.2.1" });
    return { how: "a host name that is not a safe name", field: `hosts.${name}` };
  },
  (config, _pick, odd) => {
    const name = SAFE_NAME.test(odd) ? `-${odd}` : odd;
    put(obj(config.environments), name, { track: { branch: "main" }, tree: "clusters/x" });
    return { how: "an environment name that is not a safe name", field: `environments.${name}` };
  },
  (config, pick) => {
    const [name, entry] = entryOf(config, "environments", pick);
    const ghost = at(["ghost-host", "constructor", "toString", "valueOf"], pick >> 1);
    const hosts = [...((entry.hosts as string[] | undefined) ?? []), ghost];
    entry.hosts = hosts;
    return {
      how: "an environment naming a host not in the inventory",
      field: `environments.${name}.hosts[${hosts.length - 1}]`,
      mention: ghost,
    };
  },
  (config, pick) => {
    const [field, value] = at<[string, Json]>(
      [
        ["maxParallel", 0],
        ["canary", -1],
        ["maxFailures", 1.5],
        ["onFailure", "retry"],
        ["maxParallel", "ten"],
      ],
      pick,
    );
    config.rollout = { ...obj(config.rollout ?? {}), [field]: value };
    return { how: "a rollout setting out of range", field: `rollout.${field}` };
  },
  (config) => {
    config.limits = { ...obj(config.limits ?? {}), symlinkRoots: ["etc/"] };
    return { how: "a relative symlink root", field: "limits.symlinkRoots[0]" };
  },
  (config, pick) => {
    const key = at(["environments", "hosts"], pick);
    config[key] = at<Json>([[], "x", 3, null, true], pick >> 1);
    return { how: `${key} that is not a map`, field: key };
  },
];

/** Replaces a value somewhere in a config or manifest with arbitrary JSON: valid or not, the answer must be well-formed. */
function replaceSomewhere(root: JsonObject, pick: number, junk: Json): string {
  const places: Array<{ parent: JsonObject | Json[]; key: string | number; path: string }> = [];
  const walk = (value: Json, path: string) => {
    if (Array.isArray(value)) {
      value.forEach((child, i) => {
        places.push({ parent: value, key: i, path: `${path}[${i}]` });
        walk(child, `${path}[${i}]`);
      });
    } else if (value !== null && typeof value === "object") {
      for (const [key, child] of Object.entries(value)) {
        const inner = path === "" ? key : `${path}.${key}`;
        places.push({ parent: value, key, path: inner });
        walk(child, inner);
      }
    }
  };
  walk(root, "");
  if (places.length === 0) return "(nowhere)";
  const place = at(places, pick);
  put(place.parent, place.key, junk);
  return place.path;
}

/** Snippets that YAML reads in surprising ways, for inserting into a valid file. */
const YAML_SNIPPETS = fc.oneof(
  fc.constantFrom(
    "&a ",
    "*a",
    "*nope",
    "&a [1, 2]\nb: *a\n",
    "!!binary ",
    "!foo ",
    "!!str ",
    "!!int ",
    "<<: *a\n",
    "? ",
    "- ",
    "[",
    "{",
    "}",
    "]",
    ",",
    ": ",
    "\t",
    "\uFEFF",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n",
    "\u0000",
    "\u001b[2J",
    "#",
    "'",
    '"',
    "\n",
    "|\n",
    ">-\n",
    "  ",
    "\\",
    "~",
    "null",
    "0x1F",
    "1e400",
    ".inf",
    "__proto__: {}\n",
  ),
  fc.string({ unit: "grapheme", maxLength: 10 }),
  // Nested deeper than any config, in flow and block style.
  fc
    .tuple(fc.constantFrom("[", "{a: ", "- "), fc.integer({ min: 50, max: 1500 }))
    .map(([open, depth]) => `${open.repeat(depth)}1${open === "- " ? "" : (open === "[" ? "]" : "}").repeat(depth)}\n`),
  // Aliases of aliases: a "billion laughs" of a few hundred bytes.
  fc
    .integer({ min: 2, max: 12 })
    .map(
      (levels) =>
        `\nl0: &l0 [x, x, x, x, x, x, x, x, x, x]\n${Array.from({ length: levels }, (_, i) => `l${i + 1}: &l${i + 1} [${Array(10).fill(`*l${i}`).join(", ")}]`).join("\n")}\n`,
    ),
);

/** Edits a YAML text in place: inserts, deletes or replaces a little at a few places. */
const yamlEdits = fc.array(fc.tuple(fc.constantFrom("insert", "delete", "replace"), fc.nat(), fc.nat(8), YAML_SNIPPETS), {
  minLength: 1,
  maxLength: 3,
});

function editText(text: string, edits: Array<[string, number, number, string]>): string {
  for (const [kind, position, length, snippet] of edits) {
    const at = text.length === 0 ? 0 : position % (text.length + 1);
    if (kind === "insert") text = `${text.slice(0, at)}${snippet}${text.slice(at)}`;
    else if (kind === "delete") text = `${text.slice(0, at)}${text.slice(at + length)}`;
    else text = `${text.slice(0, at)}${snippet}${text.slice(at + Math.max(1, length))}`;
  }
  return text;
}

const clone = (value: JsonObject) => structuredClone(value);

export const configCase: fc.Arbitrary<ConfigCase> = fc.oneof(
  {
    weight: 2,
    arbitrary: validConfig.map((config): ConfigCase => ({ how: "a valid config", text: stringify(config), expect: { valid: true } })),
  },
  {
    weight: 4,
    arbitrary: fc.tuple(validConfig, fc.nat(BREAKERS.length - 1), fc.nat(), oddName).map(([config, which, pick, odd]): ConfigCase => {
      const broken = clone(config);
      const { how, field, mention } = BREAKERS[which]!(broken, pick, odd);
      return { how, text: stringify(broken), expect: { field, ...(mention ? { mention } : {}) } };
    }),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(validConfig, fc.nat(), fc.jsonValue()).map(([config, pick, junk]): ConfigCase => {
      const changed = clone(config);
      const path = replaceSomewhere(changed, pick, junk as Json);
      return { how: `arbitrary JSON at ${path}`, text: stringify(changed), expect: { unknown: true } };
    }),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(validConfig, yamlEdits).map(([config, edits]): ConfigCase => ({
      how: "a valid config, edited as text",
      text: editText(stringify(config), edits),
      expect: { unknown: true },
    })),
  },
  {
    weight: 1,
    arbitrary: fc
      .oneof(
        fc.string({ unit: "grapheme", maxLength: 200 }),
        fc.string({ unit: "binary", maxLength: 200 }),
        fc.jsonValue().map((value) => stringify(value)),
      )
      .map((text): ConfigCase => ({ how: "arbitrary text", text, expect: { unknown: true } })),
  },
);

export function checkConfig(input: ConfigCase): Violation[] {
  const { config, problems } = parseSourceConfig(input.text);
  const found = problemViolations(problems, (file) => file === CONFIG_FILE);
  const said = problems.map((problem) => `${problem.field ?? ""}: ${problem.message}`).join(" | ");
  if ("valid" in input.expect && (problems.length > 0 || !config)) found.push({ kind: "a valid tidemark.yaml refused", detail: said });
  if ("field" in input.expect && !names(problems, input.expect.field, input.expect.mention)) {
    found.push({
      kind: `${input.how}: no problem names the field`,
      detail: `expected a problem at ${input.expect.field}${input.expect.mention ? ` mentioning ${input.expect.mention}` : ""}; got ${said || "none"}`,
    });
  }
  if (config && problems.length === 0) {
    for (const [name, env] of Object.entries(config.environments)) {
      for (const hostName of env.hosts ?? [])
        if (!config.hosts[hostName])
          found.push({ kind: "accepted an environment with a host not in the inventory", detail: `${name}: ${hostName}` });
    }
  }
  return found;
}

export const configTarget: FuzzTarget<ConfigCase> = { name: "tidemark.yaml", arbitrary: configCase, check: checkConfig };

// ---------------------------------------------------------------- trees and manifests

/** The config the tree targets validate against: one environment, two hosts. */
export const TREE_CONFIG = `environments:
  staging: { track: { branch: main }, tree: clusters/staging }
hosts:
  web01: { address: 192.0.2.1 }
  web02: { address: 192.0.2.2 }
`;
const TREE = "clusters/staging";

/** A generated entry of a config tree: its path from the environment's tree directory, as name components. */
export interface Leaf {
  path: string[];
  kind: "file" | "symlink" | "submodule";
  content: string;
}

type Node = { leaf: Leaf } | { dir: Map<string, Node> };

/** A Dir as readTreePair gives it, built from leaves whose names may be anything at all (a crafted tree). */
export function buildDir(leaves: readonly Leaf[]): Dir {
  const root = new Map<string, Node>();
  for (const leaf of leaves) {
    let dir = root;
    let clash = false;
    for (const name of leaf.path.slice(0, -1)) {
      const next = dir.get(name) ?? { dir: new Map<string, Node>() };
      if (!("dir" in next)) {
        clash = true;
        break;
      }
      dir.set(name, next);
      dir = next.dir;
    }
    const last = leaf.path[leaf.path.length - 1]!;
    if (!clash && !dir.has(last)) dir.set(last, { leaf });
  }
  return toDir(root);
}

const oid = (text: string) => createHash("sha1").update(text).digest("hex");

function toDir(nodes: Map<string, Node>): Dir {
  const entries = new Map<string, Entry>();
  for (const [name, node] of nodes) {
    if ("dir" in node) entries.set(name, toDir(node.dir));
    else if (node.leaf.kind === "file")
      entries.set(name, {
        kind: "file",
        mode: "100644",
        oid: oid(node.leaf.content),
        size: Buffer.byteLength(node.leaf.content),
        ...(name === MANIFEST_FILE ? { content: node.leaf.content } : {}),
      });
    else entries.set(name, { kind: node.leaf.kind, mode: node.leaf.kind === "symlink" ? "120000" : "160000", oid: oid(node.leaf.content) });
  }
  return { kind: "dir", oid: oid(JSON.stringify([...entries].map(([name, entry]) => [name, entry.oid]))), entries };
}

/** The leaves that buildDir keeps: the first of two at the same path, none below a file. */
export function keptLeaves(leaves: readonly Leaf[]): Leaf[] {
  const dir = buildDir(leaves);
  const kept: Leaf[] = [];
  for (const leaf of leaves) {
    let entry: Entry | undefined = dir;
    for (const name of leaf.path) entry = entry?.kind === "dir" ? entry.entries?.get(name) : undefined;
    if (
      entry &&
      entry.kind !== "dir" &&
      entry.oid === oid(leaf.content) &&
      !kept.some((other) => other.path.join("\0") === leaf.path.join("\0"))
    )
      kept.push(leaf);
  }
  return kept;
}

const TREE_PARSED = parseSourceConfig(TREE_CONFIG).config!;

/** Validation as `tidemark validate` does it (validateSource), on a tree built in memory. */
export function validateTree(leaves: readonly Leaf[]): Problem[] {
  return validateEnvironments(TREE_PARSED, new Map([[TREE, buildDir(leaves)]]));
}

const segment = fc.oneof({ weight: 3, arbitrary: plainName }, { weight: 2, arbitrary: oddName });
const leafKind = fc.constantFrom<Leaf["kind"]>("file", "file", "file", "file", "file", "file", "symlink", "submodule");

export interface TreeCase {
  leaves: Leaf[];
}

/** Hosts (mostly from the inventory), apps and files, with odd names anywhere; now and then a file where a directory belongs. */
export const treeCase: fc.Arbitrary<TreeCase> = fc
  .array(
    fc.record({
      // web09 is not in the inventory; nor are the names every JavaScript object has.
      host: fc.oneof(
        { weight: 6, arbitrary: fc.constantFrom("web01", "web02") },
        { weight: 1, arbitrary: fc.constantFrom("web09", "constructor", "__proto__", "toString") },
        { weight: 2, arbitrary: oddName },
      ),
      app: fc.oneof({ weight: 10, arbitrary: segment }, { weight: 1, arbitrary: fc.constant(null) }),
      path: fc.array(segment, { minLength: 1, maxLength: 3 }),
      systemd: fc.option(fc.constantFrom("web.service", "a@b.timer", "web.service.d/x.conf", "README", "web", "x.service.d/y.txt"), {
        freq: 6,
        nil: null,
      }),
      kind: leafKind,
      content: fc.string({ maxLength: 20 }),
    }),
    { minLength: 1, maxLength: 8 },
  )
  .map((specs) => ({
    leaves: specs.map(({ host, app, path, systemd, kind, content }) => ({
      path: app === null ? [host] : systemd ? [host, app, "systemd", ...systemd.split("/")] : [host, app, ...path],
      kind,
      // A manifest is the manifest target's business: here it is an empty one.
      content: app !== null && !systemd && path.length === 1 && path[0] === MANIFEST_FILE ? "{}" : content,
    })),
  }));

const UNIT = /^[A-Za-z0-9:_.@-]+\.(service|socket|timer|path|mount|automount|swap|target|slice|scope|device)$/;

/** The problem files a tree must give, worked out from the names alone: the first place each leaf goes wrong. */
export function expectedTreeProblems(leaves: readonly Leaf[]): Set<string> {
  const expected = new Set<string>();
  for (const leaf of keptLeaves(leaves)) {
    const [hostName, app, ...rest] = leaf.path;
    const hostPath = `${TREE}/${hostName}`;
    if (mustRefuseName(hostName!) || app === undefined || !["web01", "web02"].includes(hostName!)) {
      expected.add(hostPath);
      continue;
    }
    const appPath = `${hostPath}/${app}`;
    if (mustRefuseName(app) || rest.length === 0) {
      expected.add(appPath);
      continue;
    }
    const file = `${appPath}/${rest.join("/")}`;
    if (rest.some(mustRefuseName) || leaf.kind !== "file") expected.add(file);
    else if (rest[0] === "systemd" && rest.length > 1) {
      const [unit, dropIn, ...deeper] = rest.slice(1);
      const ok =
        dropIn === undefined
          ? UNIT.test(unit!)
          : deeper.length === 0 && unit!.endsWith(".d") && UNIT.test(unit!.slice(0, -2)) && dropIn.endsWith(".conf");
      if (!ok) expected.add(file);
    }
  }
  return expected;
}

export function checkTree(input: TreeCase): Violation[] {
  const problems = validateTree(input.leaves);
  const found = problemViolations(problems, (file) => file.startsWith(`${TREE}/`));
  const expected = expectedTreeProblems(input.leaves);
  const got = new Set(problems.map((problem) => problem.file));
  for (const file of expected)
    if (!got.has(file)) found.push({ kind: "a bad tree entry accepted", detail: `no problem for ${JSON.stringify(file)}` });
  for (const problem of problems)
    if (!expected.has(problem.file)) found.push({ kind: "a good tree entry refused", detail: JSON.stringify(problem) });
  return found;
}

export const treeTarget: FuzzTarget<TreeCase> = { name: "tree names", arbitrary: treeCase, check: checkTree };

// ---------------------------------------------------------------- manifest.json

const APP = `${TREE}/web01/app`;
const MANIFEST_PATH = `${APP}/${MANIFEST_FILE}`;

const appFile = fc.stringMatching(/^[a-z][a-z0-9_-]{0,6}(\.conf)?$/);
// Built once: fc.stringMatching is slow to build, far too slow to build again inside a chain.
const linkPlace = fc
  .tuple(
    fc.constantFrom("/etc/", "/usr/local/", "/opt/", "/srv/"),
    fc.stringMatching(/^[a-z][a-z0-9_-]{0,6}(\/[a-z0-9_-][a-z0-9_.-]{0,5}){0,2}$/),
  )
  .map(([root, rest]) => `${root}${rest}`);
const unitName = fc.stringMatching(/^[a-z][a-z0-9@_-]{0,8}\.(service|timer|socket)$/);
const check = fc.oneof(
  fc.record(
    {
      name: fc.string({ minLength: 1, maxLength: 10 }),
      command: fc.string({ minLength: 1, maxLength: 30 }),
      timeoutSeconds: fc.integer({ min: 1, max: 600 }),
    },
    { requiredKeys: ["command"] },
  ),
  fc.record(
    {
      http: fc
        .tuple(fc.constantFrom("http", "https"), fc.integer({ min: 1, max: 65535 }), fc.stringMatching(/^[a-z0-9/_-]{0,12}$/))
        .map(([scheme, port, path]) => `${scheme}://127.0.0.1:${port}/${path}`),
      status: fc.integer({ min: 100, max: 599 }),
    },
    { requiredKeys: ["http"] },
  ),
);
const validManifest = fc.uniqueArray(appFile, { minLength: 1, maxLength: 4 }).chain((files) =>
  fc.record({
    files: fc.constant(files),
    manifest: fc.record(
      {
        systemd: fc.record({ units_enabled: fc.array(unitName, { maxLength: 3 }) }),
        symlinks: fc.dictionary(linkPlace, fc.constantFrom(...files), { maxKeys: 3 }),
        checks: fc.array(check, { maxLength: 3 }),
      },
      { requiredKeys: [] },
    ),
  }),
);

type ManifestBreaker = (manifest: JsonObject, files: string[], pick: number) => { how: string; field: string; mention?: string };

const MANIFEST_BREAKERS: ManifestBreaker[] = [
  (manifest, _files, pick) => {
    const units = [
      ...((obj(manifest.systemd ?? {}).units_enabled as string[] | undefined) ?? []),
      at(["nginx", "a b.service", "../x.service", "x.servic", "", "web.service\n"], pick),
    ];
    manifest.systemd = { units_enabled: units };
    return { how: "a unit name that is not one", field: `systemd.units_enabled[${units.length - 1}]` };
  },
  (manifest, _files, pick) => {
    const checks = [
      ...((manifest.checks as Json[] | undefined) ?? []),
      at<Json>(
        [
          { command: "true", timeoutSeconds: 0 },
          { command: "true", timeoutSeconds: 601 },
          { http: "ftp://x/" },
          { http: "http://x/", status: 99 },
          { command: "" },
          { cmd: "true" },
          {},
          "true",
        ],
        pick,
      ),
    ];
    manifest.checks = checks;
    return { how: "a check that is not one", field: `checks[${checks.length - 1}]` };
  },
  (manifest, _files, pick) => {
    const key = at(["unit_enabled", "symlink", "check", "__proto__"], pick);
    put(manifest, key, key === "__proto__" ? {} : []);
    return { how: "an unknown key in manifest.json", field: "(top level)", mention: key };
  },
  (manifest, files, pick) => {
    const link = at(
      ["etc/x", "/etc/systemd/system/x.service", "/etc/../x", "/etc//x", "/etc/x/", "/home/x", "/etc/a\nb", "__proto__", "constructor"],
      pick,
    );
    const symlinks = { ...obj(manifest.symlinks ?? {}) };
    put(symlinks, link, at(files, pick));
    manifest.symlinks = symlinks;
    return { how: "a symlink placed where it may not go", field: "symlinks", mention: link };
  },
  (manifest, _files, pick) => {
    const target = at(["missing.conf", "", "../x", "/etc/passwd"], pick);
    manifest.symlinks = { ...obj(manifest.symlinks ?? {}), "/etc/app/x": target };
    return { how: "a symlink to a file the app does not have", field: "symlinks", mention: "/etc/app/x" };
  },
  (manifest, _files, pick) => {
    manifest.systemd = at<Json>([null, [], "web.service", { units: [] }], pick);
    return { how: "systemd that is not { units_enabled }", field: "systemd" };
  },
];

export interface ManifestCase {
  how: string;
  files: string[];
  text: string;
  expect: Expectation;
}

export const manifestCase: fc.Arbitrary<ManifestCase> = fc.oneof(
  {
    weight: 2,
    arbitrary: validManifest.map(({ files, manifest }): ManifestCase => ({
      how: "a valid manifest",
      files,
      text: JSON.stringify(manifest),
      expect: { valid: true },
    })),
  },
  {
    weight: 4,
    arbitrary: fc
      .tuple(validManifest, fc.nat(MANIFEST_BREAKERS.length - 1), fc.nat())
      .map(([{ files, manifest }, which, pick]): ManifestCase => {
        const broken = structuredClone(manifest) as JsonObject;
        const { how, field, mention } = MANIFEST_BREAKERS[which]!(broken, files, pick);
        return { how, files, text: JSON.stringify(broken), expect: { field, ...(mention ? { mention } : {}) } };
      }),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(validManifest, fc.nat(), fc.jsonValue()).map(([{ files, manifest }, pick, junk]): ManifestCase => {
      const changed = structuredClone(manifest) as JsonObject;
      const path = replaceSomewhere(changed, pick, junk as Json);
      return { how: `arbitrary JSON at ${path}`, files, text: JSON.stringify(changed), expect: { unknown: true } };
    }),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        validManifest,
        fc.array(
          fc.tuple(
            fc.constantFrom("insert", "delete", "replace"),
            fc.nat(),
            fc.nat(8),
            fc.oneof(
              fc.constantFrom("{", "}", "[", "]", ",", ":", '"', "\\", "\u0000", "null", "1e999", '"__proto__": {}', "\uFEFF"),
              fc.string({ maxLength: 8 }),
            ),
          ),
          { minLength: 1, maxLength: 3 },
        ),
      )
      .map(([{ files, manifest }, edits]): ManifestCase => ({
        how: "a valid manifest, edited as text",
        files,
        text: editText(JSON.stringify(manifest), edits),
        expect: { unknown: true },
      })),
  },
  {
    weight: 1,
    arbitrary: fc
      .oneof(
        fc.jsonValue().map((value) => JSON.stringify(value)),
        fc.string({ unit: "binary", maxLength: 100 }),
      )
      .map((text): ManifestCase => ({ how: "arbitrary text", files: ["a"], text, expect: { unknown: true } })),
  },
);

export function checkManifest(input: ManifestCase): Violation[] {
  const alone = parseManifest(MANIFEST_PATH, input.text);
  const found = problemViolations(alone.problems, (file) => file === MANIFEST_PATH);
  // In its app, as validation reads it: the symlinks' places and targets are checked there.
  const problems = validateTree([
    ...input.files.map((file): Leaf => ({ path: ["web01", "app", file], kind: "file", content: "x" })),
    { path: ["web01", "app", MANIFEST_FILE], kind: "file", content: input.text },
  ]);
  found.push(...problemViolations(problems, (file) => file === MANIFEST_PATH));
  const said = problems.map((problem) => `${problem.field ?? ""}: ${problem.message}`).join(" | ");
  if ("valid" in input.expect && problems.length > 0) found.push({ kind: "a valid manifest.json refused", detail: said });
  if ("field" in input.expect && !names(problems, input.expect.field, input.expect.mention)) {
    found.push({
      kind: `${input.how}: no problem names the field`,
      detail: `expected a problem at ${input.expect.field}${input.expect.mention ? ` mentioning ${JSON.stringify(input.expect.mention)}` : ""}; got ${said || "none"}`,
    });
  }
  if (alone.problems.length === 0 && alone.manifest) {
    // Nothing declared is dropped on the way: every symlink of the JSON is in what was read.
    const declared = Object.keys((JSON.parse(input.text) as { symlinks?: object }).symlinks ?? {});
    const read = Object.keys(alone.manifest.symlinks);
    for (const link of declared)
      if (!read.includes(link)) found.push({ kind: "a declared symlink dropped without a problem", detail: JSON.stringify(link) });
  }
  return found;
}

export const manifestTarget: FuzzTarget<ManifestCase> = { name: "manifest.json", arbitrary: manifestCase, check: checkManifest };
