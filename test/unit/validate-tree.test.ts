import { describe, expect, it } from "vitest";
import { nameProblem, readEnvTree } from "../../src/config/config-tree.js";
import { parseSourceConfig } from "../../src/config/source-config.js";
import type { Problem } from "../../src/core/problems.js";
import { validateTrees } from "../../src/pipeline/plan-environment.js";
import { configFileProblems } from "../../src/pipeline/read-source.js";
import { CONFIG_YAML, testConfig } from "../helpers/configs.js";
import { treeFixtures, type TreeFixture } from "../helpers/fixtures.js";
import { memoryObjects, memoryTree, type GitObject } from "../helpers/memory-tree.js";

/**
 * Validation as `tidemark validate` does it, on the objects of a tree built
 * in memory, read through Tidemark's own tree parser and reader.
 */
async function validate({ files, duplicates, order }: Pick<TreeFixture, "files" | "duplicates" | "order">): Promise<Problem[]> {
  const objects: GitObject[] = [];
  const root = memoryTree(files, objects, { ...(duplicates ? { duplicates } : {}), ...(order ? { order } : {}) });
  const tree = memoryObjects(objects);
  const configFaults = await configFileProblems(tree, root.oid);
  if (configFaults.length > 0) return configFaults;
  const { config, problems } = parseSourceConfig(files["tidemark.yaml"] as string);
  if (!config || problems.length > 0) return problems;
  return validateTrees(tree, config, root.oid);
}

describe("the bad-tree corpus", () => {
  for (const fixture of treeFixtures("bad-trees")) {
    it(`refuses ${fixture.name}`, async () => {
      const problems = await validate(fixture);
      for (const expected of fixture.problems ?? []) {
        expect(problems).toContainEqual(
          expect.objectContaining({
            file: expected.file,
            ...(expected.field ? { field: expected.field } : {}),
            message: expect.stringContaining(expected.message) as string,
          }),
        );
      }
      expect(problems).toHaveLength(fixture.problems!.length);
    });
  }

  it("accepts names that merely look odd, as data", async () => {
    for (const fixture of treeFixtures("good-trees")) expect(await validate(fixture)).toEqual([]);
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

describe("malformed tree objects", () => {
  const files = {
    "tidemark.yaml": CONFIG_YAML,
    "clusters/staging/web01/nginx/conf.d/site.conf": "listen 80;\n",
    "clusters/production/web01/nginx/nginx.conf": "x",
  };

  it("are refused at any depth of an app, naming the entry's path", async () => {
    const problems = await validate({ files, duplicates: { "clusters/staging/web01/nginx/conf.d/site.conf": "listen 8080;\n" } });
    expect(problems).toEqual([
      {
        file: "clusters/staging/web01/nginx/conf.d/site.conf",
        message: expect.stringContaining("two entries of this name in one git tree (git fsck: duplicateEntries)") as string,
      },
    ]);
  });

  it("count a file and a directory of one name as two entries of it", async () => {
    const problems = await validate({ files, duplicates: { "clusters/staging/web01/nginx/conf.d": "a file" } });
    expect(problems).toEqual([
      { file: "clusters/staging/web01/nginx/conf.d", message: expect.stringContaining("two entries of this name") as string },
    ]);
  });

  it("are refused in every environment whose tree is below them, once", async () => {
    const problems = await validate({ files, order: { "": ["tidemark.yaml", "clusters"] } });
    expect(problems).toEqual([{ file: "clusters", message: expect.stringContaining("an entry out of git's order") as string }]);
  });

  it("are refused in the environment's dir as plan reads it, entry by entry", () => {
    const config = testConfig();
    const envDir = {
      kind: "dir" as const,
      oid: "e".repeat(40),
      entries: new Map(),
      faults: [
        { kind: "duplicate" as const, name: "web01" },
        { kind: "encoding" as const, name: "caf\ufffd" },
      ],
    };
    expect(readEnvTree(config, "staging", envDir).problems).toEqual([
      { file: "clusters/staging/web01", message: expect.stringContaining("only one of them could be deployed") as string },
      { file: "clusters/staging/caf\ufffd", message: expect.stringContaining("a name that is not UTF-8") as string },
    ]);
  });

  it("accept a legacy 100664 file, read as 100644 as git reads it", async () => {
    expect(await validate({ files: { ...files, "clusters/staging/web01/nginx/old.conf": { content: "x", mode: "100664" } } })).toEqual([]);
  });
});
