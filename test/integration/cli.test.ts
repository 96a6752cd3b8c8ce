import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const exec = promisify(execFile);
const BIN = new URL("../../bin/tidemark.js", import.meta.url).pathname;
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

  it("refuses an unknown command with a usage exit code", async () => {
    await expect(exec(process.execPath, [BIN, "frobnicate"])).rejects.toMatchObject({ code: 64 });
  });
});
