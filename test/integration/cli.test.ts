import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const exec = promisify(execFile);
const BIN = new URL("../../bin/tidemark.js", import.meta.url).pathname;
const IMPORT_LOG = new URL("../helpers/import-log.mjs", import.meta.url).pathname;

/** The packages a run of the binary loaded (node_modules names), recorded by a loader hook. */
async function packagesLoaded(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Set<string>> {
  const dir = mkdtempSync(join(tmpdir(), "tidemark-imports-"));
  try {
    const log = join(dir, "imports.log");
    await exec(process.execPath, ["--import", IMPORT_LOG, BIN, ...args], {
      env: { PATH: process.env.PATH, HOME: dir, ...env, TIDEMARK_IMPORT_LOG: log },
    }).catch(() => undefined);
    const urls = readFileSync(log, "utf8").split("\n").filter(Boolean);
    return new Set(
      urls.map((url) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1]).filter((name): name is string => name !== undefined),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };

describe("the tidemark binary", () => {
  it("prints its version", async () => {
    const { stdout } = await exec(process.execPath, [BIN, "--version"]);
    expect(stdout.trim()).toBe(version);
  });

  it("prints help", async () => {
    const { stdout } = await exec(process.execPath, [BIN, "--help"]);
    expect(stdout).toMatch(/^Usage: tidemark/m);
  });

  it("loads nothing but the argument parser for --version and --help", async () => {
    expect([...(await packagesLoaded(["--version"]))]).toEqual(["commander"]);
    expect([...(await packagesLoaded(["--help"]))]).toEqual(["commander"]);
  });

  it("loads no queue, Redis or GitHub client for the commands that need none", async () => {
    // Each gets as far as reading its settings and the source repo (a closed port): every static import is loaded by then.
    const env = { TIDEMARK_REPO: "http://127.0.0.1:9/none.git" };
    for (const args of [["validate"], ["plan", "staging"], ["status", "staging"], ["history", "staging"], ["deploy", "staging", "--yes"]]) {
      const loaded = [...(await packagesLoaded(args, env))];
      expect({ args, heavy: loaded.filter((name) => /^(bullmq|ioredis|@octokit\/)/.test(name)) }).toEqual({ args, heavy: [] });
      expect({ args, loaded: loaded.includes("isomorphic-git") }).toEqual({ args, loaded: true });
    }
  });

  it("refuses an unknown command with a usage exit code", async () => {
    await expect(exec(process.execPath, [BIN, "frobnicate"])).rejects.toMatchObject({ code: 64 });
  });
});
