import { describe, expect, it } from "vitest";
import { parseSourceConfig } from "../../src/config/source-config.js";
import { nameProblem, validateEnvironments } from "../../src/core/config-tree.js";
import type { Problem } from "../../src/core/problems.js";
import { treeFixtures } from "../helpers/fixtures.js";
import { dirAt, memoryTree } from "../helpers/memory-tree.js";

/** Validation as `tidemark validate` does it, on a tree built in memory. */
function validate(files: Record<string, Parameters<typeof memoryTree>[0][string]>): Problem[] {
  const { config, problems } = parseSourceConfig(files["tidemark.yaml"] as string);
  if (!config || problems.length > 0) return problems;
  const root = memoryTree(files);
  return validateEnvironments(config, new Map(Object.values(config.environments).map((env) => [env.tree, dirAt(root, env.tree)])));
}

describe("the bad-tree corpus", () => {
  for (const fixture of treeFixtures("bad-trees")) {
    it(`refuses ${fixture.name}`, () => {
      const problems = validate(fixture.files);
      for (const expected of fixture.problems ?? []) {
        expect(problems).toContainEqual(expect.objectContaining({ file: expected.file, ...(expected.field ? { field: expected.field } : {}), message: expect.stringContaining(expected.message) as string }));
      }
      expect(problems).toHaveLength(fixture.problems!.length);
    });
  }

  it("accepts names that merely look odd, as data", () => {
    for (const fixture of treeFixtures("good-trees")) expect(validate(fixture.files)).toEqual([]);
  });
});

describe("nameProblem", () => {
  it("refuses names that could escape a path or hide in a terminal", () => {
    for (const name of ["", ".", "..", "/etc", "a/b", "a\0b", "tab\there", ".git", ".GIT"]) expect(nameProblem(name)).toBeDefined();
  });

  it("accepts odd names as data", () => {
    for (const name of ["with space", "it's", "$(touch x)", "-rf", "ünïcode", ".gitignore"]) expect(nameProblem(name)).toBeUndefined();
  });
});
