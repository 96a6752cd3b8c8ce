import { load as loadYaml } from "js-yaml";
import { Composer, Parser, YAMLParseError, type CST, type Document } from "yaml";
import { z } from "zod";
import type { Environment, SourceConfig } from "../core/config.js";
import type { Problem } from "../core/problems.js";
import type { Expect, SameType } from "./same-type.js";
import { hasProtoKey, zodProblems } from "./zod-problems.js";

/**
 * `tidemark.yaml` at the root of the source repo: environments with their
 * tracking rule, the hosts inventory, the rollout policy and limits. The field
 * names that docs/configuration.md documents are a contract; fields may be added freely.
 */
export const CONFIG_FILE = "tidemark.yaml";

/** Names that go into git refs, status contexts and logs. */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const nameRule = (what: string) => `${what} names are letters, digits, '_', '.', '-' (at most 63, starting with a letter or digit)`;
const safeName = (what: string) => z.string().regex(SAFE_NAME, nameRule(what));

/** A value's name, as templates read it: `vars.NAME`. */
const VarsSchema = z.record(
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "a value's name is a letter or '_', then letters, digits or '_' (templates read vars.NAME)"),
  z.unknown(),
);

const TrackSchema = z.union(
  [
    z.strictObject({ branch: z.string().min(1) }),
    z.strictObject({ tag: z.string().min(1) }),
    z.strictObject({ tags: z.string().min(1), prerelease: z.boolean().default(false) }),
  ],
  { error: "track takes exactly one of: { branch: NAME }, { tag: NAME } (a pin), { tags: PATTERN } (newest by semver)" },
);

const EnvironmentSchema = z.strictObject({
  track: TrackSchema,
  tree: z
    .string()
    .min(1)
    .refine(
      (tree) => !tree.startsWith("/") && !tree.split("/").some((part) => part === ".." || part === "."),
      "tree is a directory inside the source repo, without '..' or a leading '/'",
    ),
  hosts: z.array(safeName("host or group")).optional(),
  vars: VarsSchema.optional(),
  drift: z
    .strictObject({
      mode: z.enum(["off", "warn", "heal"], { error: "drift.mode is off, warn or heal" }).default("warn"),
      interval: z
        .string()
        .regex(/^[1-9][0-9]*(s|m|h)$/, "drift.interval is a number and a unit: 30s, 10m, 1h")
        .default("10m")
        .transform((text) => Number(text.slice(0, -1)) * { s: 1, m: 60, h: 3600 }[text.slice(-1) as "s" | "m" | "h"]),
      ignore: z.array(z.string().min(1)).default([]),
    })
    .transform(({ mode, interval, ignore }) => ({ mode, intervalSeconds: interval, ignore }))
    .optional(),
});

const GroupSchema = z
  .union([z.array(safeName("host")), z.strictObject({ hosts: z.array(safeName("host")), vars: VarsSchema.optional() })], {
    error: "a group is a list of hosts, or { hosts: [...], vars: {...} }",
  })
  .transform((group) => (Array.isArray(group) ? { hosts: group } : group));

const HostSchema = z.strictObject({
  address: z.string({ error: "every host needs an address to reach it" }).min(1, "every host needs an address to reach it"),
  port: z.number().int().min(1).max(65535).default(22),
  user: z.string().min(1).default("root"),
  hostKey: z
    .string()
    .regex(
      /^(ssh-ed25519|ecdsa-sha2-nistp\d+|ssh-rsa|rsa-sha2-\d+) [A-Za-z0-9+/=]+( .*)?$/,
      "hostKey is an OpenSSH public key line, e.g. `ssh-ed25519 AAAA...`",
    )
    .optional(),
  vars: VarsSchema.optional(),
});

const RolloutSchema = z.strictObject({
  maxParallel: z.number().int().min(1).default(10),
  canary: z.number().int().min(0).default(1),
  maxFailures: z.number().int().min(0).default(0),
  onFailure: z.enum(["rollback-host", "rollback-all", "halt"]).default("rollback-host"),
  confirmSeconds: z.number().int().min(1).max(86_400).default(60),
});

const LimitsSchema = z.strictObject({
  maxFileBytes: z
    .number()
    .int()
    .min(1)
    .default(16 * 1024 * 1024),
  maxReleaseBytes: z
    .number()
    .int()
    .min(1)
    .default(256 * 1024 * 1024),
  /** Where manifests may place symlinks on a host. */
  symlinkRoots: z
    .array(z.string().regex(/^\/.+\/$/, "a symlink root is an absolute directory ending in '/'"))
    .default(["/etc/", "/usr/local/", "/opt/", "/srv/"]),
});

export const SourceConfigSchema = z.strictObject({
  environments: z.record(safeName("environment"), EnvironmentSchema),
  hosts: z.record(safeName("host"), HostSchema),
  groups: z.record(safeName("group"), GroupSchema).optional(),
  rollout: RolloutSchema.default(RolloutSchema.parse({})),
  limits: LimitsSchema.default(LimitsSchema.parse({})),
  secrets: z
    .strictObject({
      retired: z
        .array(
          z.string().regex(/^age1[02-9ac-hj-np-z]{58}$/, "an age recipient, age1 and 58 more letters and digits (age-keygen -y prints it)"),
        )
        .default([]),
    })
    .optional(),
});

/** The schema outputs exactly the core's SourceConfig (and so its environments, hosts, rollout and limits): neither can change alone. */
type _OutputsCoreType = Expect<SameType<z.output<typeof SourceConfigSchema>, SourceConfig>>;

/**
 * Far deeper than tidemark.yaml ever nests (4 levels). The YAML library
 * composes recursively: a document nested a thousand levels overflows the
 * stack inside it, and after that V8 can abort the whole process on a later
 * parse (a fatal "RegExpCompiler Allocation failed"), so such a file is
 * refused before it is composed.
 */
const MAX_NESTING = 64;

/** Parses and checks `tidemark.yaml`: the YAML's own errors, then the schema, then the rules between fields. */
export function parseSourceConfig(text: string): { config?: SourceConfig; problems: Problem[] } {
  const plain = readPlain(text);
  const read = plain ?? readYaml(text);
  if ("problems" in read) return read;
  const data = read.data;
  const dropped = (["environments", "hosts"] as const)
    .filter((key) => hasProtoKey((data as Partial<Record<string, unknown>> | null)?.[key]))
    .map((key) => ({ file: CONFIG_FILE, field: `${key}.__proto__`, message: nameRule(key === "hosts" ? "host" : "environment") }));
  const parsed = SourceConfigSchema.safeParse(data);
  if (!parsed.success) return { problems: [...zodProblems(CONFIG_FILE, parsed.error), ...dropped] };
  // Host and environment names come from trees, URLs and the command line: in a plain object, `constructor` or `toString` would find Object.prototype's and pass for one.
  const config: SourceConfig = {
    ...parsed.data,
    environments: lookupTable(parsed.data.environments),
    hosts: lookupTable(parsed.data.hosts),
    ...(parsed.data.groups ? { groups: lookupTable(parsed.data.groups) } : {}),
  };
  const problems = semanticProblems(config);
  return { config: problems.length === 0 ? expandGroups(config) : config, problems: [...problems, ...dropped] };
}

/**
 * The file's data as js-yaml reads it: about six times as fast as the
 * `yaml` library on a fleet's inventory, and alike on plain YAML 1.2 data
 * (test/unit/source-config-yaml.test.ts compares the two). Anything else
 * goes to `yaml`, whose errors and limits the problems quote: what js-yaml
 * refuses, what the two read each their own way (ODD, readsAlike), a top
 * level that is not a mapping, and nesting deeper than the limit.
 */
export function readPlain(text: string): { data: unknown } | undefined {
  if (ODD.some((pattern) => pattern.test(text))) return undefined;
  let data: unknown;
  try {
    data = loadYaml(text, { maxDepth: MAX_NESTING, maxAliases: 0 });
  } catch {
    return undefined;
  }
  // tidemark.yaml is a mapping: whatever else the text is, yaml says how it reads it.
  const mapping = data !== null && typeof data === "object" && !Array.isArray(data);
  return mapping && readsAlike(data) ? { data } : undefined;
}

/** Whether yaml reads the data alike: a null key (`~:`, or none) is "" to yaml and "null" to js-yaml; a number too large for a double is Infinity to yaml and text to js-yaml. */
function readsAlike(data: unknown): boolean {
  if (typeof data === "string") return !overflows(data);
  if (data === null || typeof data !== "object") return true;
  if (Array.isArray(data)) return data.every(readsAlike);
  return Object.entries(data).every(([key, value]) => key !== "null" && !overflows(key) && readsAlike(value));
}
const overflows = (text: string) => FLOAT.test(text) && !Number.isFinite(Number(text));
const FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;

/**
 * What the two libraries read each its own way, found by comparing them:
 * directives and document ends, tabs and document markers in indentation,
 * anchors and tags (an `&` or `!` after a space in a value, too), and a
 * quoted string continued with `\` at the end of a line.
 */
const ODD = [/^(%|\.\.\.)/m, /^[ \t]*\t/m, /^\s+(---|\.\.\.)/m, /(^|[\s[\]{},:])[&!]/, /\\$/m];

/** The file's data as the `yaml` library reads it, or what is wrong with its YAML, with the line. */
export function readYaml(text: string): { data: unknown } | { problems: Problem[] } {
  // One pass of the parser serves both the depth check and the document.
  const tokens = [...new Parser().parse(text)];
  if (nestingDepth(tokens) > MAX_NESTING)
    return { problems: [{ file: CONFIG_FILE, message: `YAML nested more than ${MAX_NESTING} levels deep; tidemark.yaml needs a few` }] };
  const document = composeFirst(tokens, text.length);
  const yamlProblems = [...document.errors, ...document.warnings].map((error) => ({
    file: CONFIG_FILE,
    field: error.linePos ? `line ${error.linePos[0].line}` : undefined,
    message: error.message.split("\n")[0] ?? error.message,
  }));
  if (document.errors.length > 0) return { problems: yamlProblems };
  try {
    return { data: document.toJS() };
  } catch (error) {
    // An alias to no anchor, or aliases of aliases that would blow the data up (a "billion laughs"): the library throws.
    return { problems: [{ file: CONFIG_FILE, message: error instanceof Error ? error.message : String(error) }] };
  }
}

function lookupTable<T>(record: Record<string, T>): Record<string, T> {
  return Object.assign(Object.create(null) as Record<string, T>, record);
}

/** The first YAML document of the tokens, as the library's parseDocument composes it: a second document is an error of the first. */
function composeFirst(tokens: readonly CST.Token[], length: number): Document.Parsed {
  let first: Document.Parsed | undefined;
  for (const document of new Composer({ uniqueKeys: true }).compose(tokens, true, length)) {
    if (!first) first = document;
    else {
      first.errors.push(
        new YAMLParseError(
          [document.range[0], document.range[1]],
          "MULTIPLE_DOCS",
          "Source contains multiple documents; please use YAML.parseAllDocuments()",
        ),
      );
      break;
    }
  }
  return first!;
}

/** How deep the YAML's collections nest, from the parser's tokens (the parser does not recurse), walked without recursion. */
function nestingDepth(tokens: readonly unknown[]): number {
  const pending: Array<{ token: unknown; depth: number }> = tokens.map((token) => ({ token, depth: 0 }));
  let deepest = 0;
  while (pending.length > 0 && deepest <= MAX_NESTING) {
    const { token, depth } = pending.pop()!;
    if (!token || typeof token !== "object") continue;
    const type = (token as { type?: unknown }).type;
    const inner = type === "block-map" || type === "block-seq" || type === "flow-collection" ? depth + 1 : depth;
    deepest = Math.max(deepest, inner);
    for (const child of Object.values(token)) if (child && typeof child === "object") pending.push({ token: child, depth: inner });
  }
  return deepest;
}

function semanticProblems(config: SourceConfig): Problem[] {
  const problems: Problem[] = [];
  const groups = config.groups ?? lookupTable({});
  for (const [group, { hosts }] of Object.entries(groups)) {
    if (config.hosts[group])
      problems.push({
        file: CONFIG_FILE,
        field: `groups.${group}`,
        message: `${group} is a host and a group: an environment's hosts: and the config tree could not tell them apart; rename the group`,
      });
    // An object's keys that look like array indices come first in JavaScript, whatever the file says: the order of groups is their precedence.
    if (/^(0|[1-9][0-9]*)$/.test(group))
      problems.push({ file: CONFIG_FILE, field: `groups.${group}`, message: "a group's name needs a character other than digits" });
    for (const [i, host] of hosts.entries())
      if (!config.hosts[host])
        problems.push({ file: CONFIG_FILE, field: `groups.${group}[${i}]`, message: `host ${host} is not in the inventory (hosts:)` });
  }
  for (const [name, environment] of Object.entries(config.environments)) {
    for (const [i, host] of (environment.hosts ?? []).entries()) {
      if (!config.hosts[host] && !groups[host])
        problems.push({
          file: CONFIG_FILE,
          field: `environments.${name}.hosts[${i}]`,
          message: `host ${host} is not in the inventory (hosts:)${config.groups ? ", nor a group (groups:)" : ""}`,
        });
    }
  }
  return problems;
}

/** Each environment's hosts: with the groups it names replaced by their hosts, each host once, in order. */
function expandGroups(config: SourceConfig): SourceConfig {
  const groups = config.groups;
  if (!groups) return config;
  const environments = Object.entries(config.environments).map(([name, environment]): [string, Environment] => [
    name,
    environment.hosts
      ? {
          ...environment,
          hosts: [...new Set(environment.hosts.flatMap((entry) => (config.hosts[entry] ? [entry] : (groups[entry]?.hosts ?? []))))],
        }
      : environment,
  ]);
  return { ...config, environments: lookupTable(Object.fromEntries(environments)) };
}
