import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Store } from "../../src/store/store.js";
import { GiveUp, run, waitFor } from "../bed/proc.js";

const APPENDER = new URL("../helpers/store-appender.ts", import.meta.url).pathname;

/** Starts an appender; resolves its output so far and a way to kill it. */
function appender(gitdir: string, count: number) {
  const child = spawn(process.execPath, ["--import", "tsx", APPENDER, gitdir, String(count)], { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  let stderr = "";
  let buffered = "";
  child.stdout.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    const parts = buffered.split("\n");
    buffered = parts.pop() ?? "";
    lines.push(...parts);
  });
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    child,
    lines,
    exited,
    stderr: () => stderr,
    appended: () => lines.filter((line) => line.startsWith("appended ")).map((line) => line.slice(9)),
  };
}

async function fsck(gitdir: string): Promise<string> {
  const { code, stdout, stderr } = await run("git", ["--git-dir", gitdir, "fsck", "--no-dangling"], { allowFailure: true });
  return code === 0 ? "ok" : `git fsck failed (${code}): ${stdout}${stderr}`;
}

describe("the store under crashes and concurrent writers", () => {
  const dirs: string[] = [];
  const tempStore = () => {
    const dir = mkdtempSync(join(tmpdir(), "tidemark-store-"));
    dirs.push(dir);
    return join(dir, "store.git");
  };

  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("survives SIGKILL at random points of 200 appends: git fsck passes every time and the next append continues", async () => {
    const gitdir = tempStore();
    const confirmed: string[] = [];
    let kills = 0;
    for (let recorded = 0; recorded < 200;) {
      const writer = appender(gitdir, 200 - recorded);
      await waitFor(
        "the appender to start",
        () => {
          if (writer.child.exitCode !== null) throw new GiveUp(`the appender exited: ${writer.stderr()}`);
          return writer.lines.includes("ready");
        },
        { timeoutMs: 30_000 },
      );
      // Let it run for a random while, then cut it wherever it is.
      await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 1500));
      writer.child.kill("SIGKILL");
      await writer.exited;
      kills++;
      confirmed.push(...writer.appended());
      expect(await fsck(gitdir)).toBe("ok");
      recorded = (await (await Store.open(gitdir)).history("staging", 1000)).length;
    }
    const history = await (await Store.open(gitdir)).history("staging", 1000);
    const ids = history.map((entry) => entry.id);
    expect(new Set(ids).size).toBe(ids.length);
    // Every append the writer saw finish is in the history: none lost to a later crash.
    for (const id of confirmed) expect(ids).toContain(id);
    expect(kills).toBeGreaterThan(1);
  }, 180_000);

  it("keeps every update of two writers appending at once", async () => {
    const gitdir = tempStore();
    await Store.open(gitdir);
    const writers = [appender(gitdir, 50), appender(gitdir, 50)];
    const codes = await Promise.all(writers.map((writer) => writer.exited));
    expect(codes).toEqual([0, 0]);
    const history = await (await Store.open(gitdir)).history("staging", 1000);
    expect(history).toHaveLength(100);
    expect(new Set(history.map((entry) => entry.id))).toEqual(new Set(writers.flatMap((writer) => writer.appended())));
    expect(await fsck(gitdir)).toBe("ok");
  });
});
