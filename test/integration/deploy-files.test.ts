import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import { WorkRepo } from "../bed/work-repo.js";
import { tidemark } from "../helpers/run-cli.js";

const exec = promisify(execFile);
const DEPLOY = new URL("../../deploy/", import.meta.url).pathname;

describe("deploy/: what people copy to run Tidemark", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let state: string;

  beforeAll(async () => {
    bed = await TestBed.up({ forge: true });
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    state = mkdtempSync(join(tmpdir(), "tidemark-state-"));
  });

  afterAll(async () => {
    work?.remove();
    rmSync(state, { recursive: true, force: true });
    await bed?.down();
  });

  it("the example source repo is valid on both of its refs", async () => {
    cpSync(join(DEPLOY, "example-repo"), work.dir, { recursive: true });
    await work.commit({}, "the example repo");
    await work.tag("production");
    await work.push("main", "production");
    const env = {
      TIDEMARK_REPO: bed.forge!.cloneUrl(bed.forgeRepo),
      TIDEMARK_STORE: join(state, "store.git"),
      TIDEMARK_MIRRORS: join(state, "mirrors"),
    };
    for (const ref of ["main", "production"]) {
      const result = await tidemark(["validate", "--ref", ref], env);
      expect({ ref, code: result.code, stderr: result.stderr }).toEqual({ ref, code: 0, stderr: "" });
    }
  });

  it("the systemd units pass systemd-analyze verify", async () => {
    for (const unit of ["tidemark.service", "tidemark-worker.service"]) {
      const { stderr } = await exec("systemd-analyze", ["verify", "--man=no", join(DEPLOY, unit)]);
      expect({ unit, stderr }).toEqual({ unit, stderr: "" });
    }
  });

  it("compose runs Redis with AOF on and noeviction", () => {
    const compose = parse(readFileSync(join(DEPLOY, "compose.yaml"), "utf8")) as { services: { redis: { command: string[] } } };
    const command = compose.services.redis.command.join(" ");
    expect(command).toContain("--appendonly yes");
    expect(command).toContain("--maxmemory-policy noeviction");
  });
});
