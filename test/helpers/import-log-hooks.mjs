import { appendFileSync } from "node:fs";

/** A module loader hook: writes down what was resolved, changes nothing. */
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  if (process.env.TIDEMARK_IMPORT_LOG) appendFileSync(process.env.TIDEMARK_IMPORT_LOG, `${resolved.url}\n`);
  return resolved;
}
