import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ERROR_CODES, errorsDoc, EXIT, exitCodeOf, retryHelps } from "../../src/core/error-codes.js";

const SRC = new URL("../../src/", import.meta.url).pathname;

/** Every code a TidemarkError is raised with in the source, as written. */
function raisedCodes(): Set<string> {
  const files = readdirSync(SRC, { recursive: true, encoding: "utf8" }).filter((file) => file.endsWith(".ts"));
  const codes = new Set<string>();
  for (const file of files) {
    const text = readFileSync(join(SRC, file), "utf8");
    for (const match of text.matchAll(/(?:TidemarkError|super)\(\s*"([A-Z_]+)"/g)) codes.add(match[1]!);
  }
  return codes;
}

describe("the error table", () => {
  it("has a row for every code the source raises, and no row for a code it never raises", () => {
    const raised = raisedCodes();
    expect([...raised].filter((code) => !(code in ERROR_CODES))).toEqual([]);
    expect(Object.keys(ERROR_CODES).filter((code) => !raised.has(code))).toEqual([]);
  });

  it("is what docs/errors.md says (npm run docs:errors writes it)", () => {
    expect(readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8")).toBe(errorsDoc());
  });

  it("decides the CLI's exit code and the worker's retry from one place", () => {
    expect(exitCodeOf("CONFIG_INVALID")).toBe(EXIT.invalid);
    expect(exitCodeOf("REPO_UNREACHABLE")).toBe(EXIT.repoUnreachable);
    expect(exitCodeOf("USAGE")).toBe(EXIT.usage);
    expect(exitCodeOf(undefined)).toBe(EXIT.failed);
    expect(retryHelps("CONFIG_INVALID")).toBe(false);
    expect(retryHelps("ENV_UNKNOWN")).toBe(false);
    expect(retryHelps("REPO_UNREACHABLE")).toBe(true);
    expect(retryHelps(undefined)).toBe(true);
  });
});
