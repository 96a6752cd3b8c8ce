import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatProblem } from "../../src/core/problems.js";
import { TestBed } from "../bed/bed.js";
import { WorkRepo } from "../bed/work-repo.js";
import { treeFixtures } from "../helpers/fixtures.js";
import { writeRawCommit } from "../helpers/raw-commit.js";
import { tidemark } from "../helpers/run-cli.js";

const exec = promisify(execFile);
const BIN = new URL("../../bin/tidemark.js", import.meta.url).pathname;

describe("tidemark validate on the bad-tree corpus, pushed to the forge", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let state: string;
  let env: NodeJS.ProcessEnv;
  const bad = treeFixtures("bad-trees").filter((fixture) => !fixture.memoryOnly);
  const good = treeFixtures("good-trees");

  beforeAll(async () => {
    bed = await TestBed.up({ forge: true });
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    state = mkdtempSync(join(tmpdir(), "tidemark-state-"));
    env = {
      TIDEMARK_REPO: bed.forge!.cloneUrl(bed.forgeRepo),
      TIDEMARK_STORE: join(state, "store.git"),
      TIDEMARK_MIRRORS: join(state, "mirrors"),
    };
    for (const fixture of [...bad, ...good])
      await writeRawCommit(work.dir, `fixtures/${fixture.name}`, fixture.files, fixture.name, fixture);
    await writeRawCommit(work.dir, "main", good[0]!.files, "a valid default branch");
    await work.push("main", "refs/heads/fixtures/*:refs/heads/fixtures/*");
  });

  afterAll(async () => {
    work?.remove();
    rmSync(state, { recursive: true, force: true });
    await bed?.down();
  });

  for (const fixture of bad) {
    it(`refuses ${fixture.name} with exit code 2, naming the file and field`, async () => {
      const result = await tidemark(["validate", "--ref", `fixtures/${fixture.name}`], env);
      expect(result.stderr).toBe("");
      expect(result.code).toBe(2);
      for (const problem of fixture.problems ?? []) {
        const line = formatProblem({ file: problem.file, ...(problem.field ? { field: problem.field } : {}), message: "" });
        expect(result.stdout).toContain(`  - ${line}`);
        expect(result.stdout).toContain(problem.message);
      }
    });
  }

  for (const fixture of bad.filter((candidate) => candidate.plan)) {
    it(`refuses to plan ${fixture.plan} at ${fixture.name} with exit code 2, naming the file`, async () => {
      const result = await tidemark(["plan", fixture.plan!, "--ref", `fixtures/${fixture.name}`], env);
      expect(result.code).toBe(2);
      for (const problem of fixture.problems ?? []) expect(result.stderr).toContain(`  - ${problem.file}: ${problem.message}`);
    });
  }

  it("accepts odd names as data", async () => {
    for (const fixture of good) expect(await tidemark(["validate", "--ref", `fixtures/${fixture.name}`], env)).toMatchObject({ code: 0 });
  });

  it("exits 2 from the installed binary too, with every problem as JSON", async () => {
    const failure = (await exec(process.execPath, [BIN, "validate", "--ref", "fixtures/bad-unit-names", "--json"], {
      env: { ...process.env, ...env },
    }).catch((error: unknown) => error)) as { code: number; stdout: string };
    expect(failure.code).toBe(2);
    const report = JSON.parse(failure.stdout) as { valid: boolean; problems: unknown[] };
    expect(report.valid).toBe(false);
    expect(report.problems).toHaveLength(3);
  });
});
