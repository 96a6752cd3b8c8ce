import type { z } from "zod";
import type { Problem } from "../core/problems.js";

/** Turns zod's issues into problems that name the file and the field, as `environments.staging.track`. */
export function zodProblems(file: string, error: z.ZodError): Problem[] {
  return error.issues.map((issue) => ({ file, field: fieldPath(issue.path), message: issue.message }));
}

export function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  return path.reduce<string>((text, key) => (typeof key === "number" ? `${text}[${key}]` : text === "" ? String(key) : `${text}.${String(key)}`), "") || "(top level)";
}
