import type { z } from "zod";
import type { Problem } from "../core/problems.js";

/** Turns zod's issues into problems that name the file and the field, as `environments.staging.track`. */
export function zodProblems(file: string, error: z.ZodError): Problem[] {
  // A bad record key (a host or environment name) carries what is wrong with it inside: "Invalid key in record" alone says nothing.
  return error.issues.map((issue) => ({
    file,
    field: fieldPath(issue.path),
    message: issue.code === "invalid_key" ? issue.issues.map((inner) => inner.message).join("; ") : issue.message,
  }));
}

export function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  return (
    path.reduce<string>(
      (text, key) => (typeof key === "number" ? `${text}[${key}]` : text === "" ? String(key) : `${text}.${String(key)}`),
      "",
    ) || "(top level)"
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
