import { z } from "zod";
import { HOOK_PHASES, type Manifest } from "../core/config.js";
import type { Problem } from "../core/problems.js";
import type { Expect, SameType } from "./same-type.js";
import { hasProtoKey, zodProblems } from "./zod-problems.js";

/**
 * `manifest.json` of an app, as in Deptool: units to enable, symlinks to
 * place on the host, and checks that must pass after the units settle.
 */
export const MANIFEST_FILE = "manifest.json";

export const UNIT_NAME = /^[A-Za-z0-9:_.@-]+\.(service|socket|timer|path|mount|automount|swap|target|slice|scope|device)$/;

const CheckSchema = z.union(
  [
    z.strictObject({
      name: z.string().min(1).optional(),
      command: z.string().min(1),
      timeoutSeconds: z.number().positive().max(600).default(30),
    }),
    z.strictObject({
      name: z.string().min(1).optional(),
      http: z.url({ protocol: /^https?$/, error: "an http check needs an http:// or https:// URL" }),
      status: z.number().int().min(100).max(599).default(200),
      timeoutSeconds: z.number().positive().max(600).default(30),
    }),
  ],
  { error: 'a check is { command: "..." } or { http: "http://..." }' },
);

const HookSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "a hook's name is letters, digits, '_', '.', '-' (at most 64)"),
  phase: z.enum(HOOK_PHASES),
  run: z.string().min(1, "run is a file of the app, e.g. bin/migrate"),
  on: z.enum(["each", "once"]).default("each"),
  timeoutSeconds: z.number().positive().max(86_400).default(300),
  onFailure: z.enum(["rollback", "warn"]).default("rollback"),
  irreversible: z.boolean().default(false),
  user: z
    .string()
    .regex(/^[a-z_][a-z0-9_-]*\$?$/, "a user name (letters, digits, '_' and '-')")
    .optional(),
});

export const ManifestSchema = z.strictObject({
  systemd: z
    .strictObject({
      units_enabled: z
        .array(z.string().regex(UNIT_NAME, "not a systemd unit name (letters, digits, ':_.@-', and a unit suffix such as .service)"))
        .default([]),
    })
    .default({ units_enabled: [] }),
  /** Absolute host path → file in the app. */
  symlinks: z.record(z.string(), z.string()).default({}),
  checks: z.array(CheckSchema).default([]),
  /** A secret file's path in the app → its mode and group on the host (default 0600, root). */
  secrets: z
    .record(
      z.string(),
      z.strictObject({
        mode: z
          .string()
          .regex(/^0?[0-7]{3}$/, 'an octal mode such as "0640"')
          .refine(
            (mode) => (parseInt(mode, 8) & 0o7) === 0,
            "a secret is never readable or writable by others: end the mode in 0, e.g. 0640",
          )
          .default("0600"),
        group: z
          .string()
          .regex(/^[a-z_][a-z0-9_-]*\$?$/, "a group name (letters, digits, '_' and '-')")
          .optional(),
      }),
    )
    .default({}),
  hooks: z.array(HookSchema).default([]),
});

/** The schema outputs exactly the core's Manifest (and so its checks): neither can change alone. */
type _OutputsCoreType = Expect<SameType<z.output<typeof ManifestSchema>, Manifest>>;

export const EMPTY_MANIFEST: Manifest = ManifestSchema.parse({});

export function parseManifest(file: string, text: string): { manifest?: Manifest; problems: Problem[] } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { problems: [{ file, message: `not valid JSON: ${error instanceof Error ? error.message : String(error)}` }] };
  }
  // Layering takes `remove` out of the manifests it merges: one that reaches here belongs to an app no shared layer gives.
  const removes = json !== null && typeof json === "object" && Object.hasOwn(json, "remove");
  const parsed = ManifestSchema.safeParse(
    removes ? Object.fromEntries(Object.entries(json as object).filter(([key]) => key !== "remove")) : json,
  );
  const dropped = [
    ...(hasProtoKey((json as { symlinks?: unknown } | null)?.symlinks)
      ? [{ file, field: "symlinks.__proto__", message: "a symlink is placed at an absolute host path, not at __proto__" }]
      : []),
    ...(removes
      ? [
          {
            file,
            field: "remove",
            message: "remove takes away what a shared layer (_all, _groups/<group>) gives, and none gives this host this app",
          },
        ]
      : []),
  ];
  if (!parsed.success) return { problems: [...zodProblems(file, parsed.error, ["secrets"]), ...dropped] };
  return dropped.length > 0 ? { problems: dropped } : { manifest: parsed.data, problems: [] };
}
