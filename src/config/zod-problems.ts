import type { z } from "zod";
import type { Problem } from "../core/problems.js";

/**
 * Turns zod's issues into problems that name the file and the field, as
 * `environments.staging.track`; a key of the top-level records named in
 * `pathKeyed` is a file's path and is quoted: `secrets["db.env"].mode`.
 */
export function zodProblems(file: string, error: z.ZodError, pathKeyed: readonly string[] = []): Problem[] {
  // A bad record key (a host or environment name) carries what is wrong with it inside: "Invalid key in record" alone says nothing.
  return error.issues.map((issue) => ({
    file,
    field: fieldPath(issue.path, pathKeyed),
    message: issue.code === "invalid_key" ? issue.issues.map((inner) => inner.message).join("; ") : issue.message,
  }));
}

export function fieldPath(path: ReadonlyArray<PropertyKey>, pathKeyed: readonly string[] = []): string {
  return (
    path.reduce<string>((text, key, i) => {
      if (typeof key === "number") return `${text}[${key}]`;
      if (i === 1 && pathKeyed.includes(String(path[0]))) return `${text}[${JSON.stringify(String(key))}]`;
      return text === "" ? String(key) : `${text}.${String(key)}`;
    }, "") || "(top level)"
  );
}

/**
 * Whether parsed JSON or YAML has an own `__proto__` key: zod leaves such a
 * key out of a record without a word (assigning it would replace the result's
 * prototype), so what was declared under it would vanish unchecked.
 */
export function hasProtoKey(value: unknown): boolean {
  return value !== null && typeof value === "object" && Object.hasOwn(value, "__proto__");
}
