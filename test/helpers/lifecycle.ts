import { afterAll, afterEach, expect } from "vitest";
import type { ForgeClient } from "../bed/forge/client.js";
import { OperatorProcess } from "./operator-process.js";

/** What a test file made and must undo, newest first. */
export class Owned {
  private readonly undo: Array<() => unknown> = [];

  /** Registers how to undo what was just made, and hands it back. */
  own<T>(thing: T, release: (thing: T) => unknown): T {
    this.undo.push(() => release(thing));
    return thing;
  }

  async release(): Promise<void> {
    for (const step of this.undo.splice(0).reverse()) await step();
  }
}

/**
 * What every integration file does around its tests, said once. After each
 * test: the operator's log when the test failed (the first thing to read),
 * and no request to the GitHub stand-in that GitHub's description refuses.
 * After all: every operator process stopped, then everything the file owns
 * undone newest first (the bed last), also when beforeAll failed halfway.
 */
export function integrationLifecycle(
  options: { forge?: () => ForgeClient | null | undefined; log?: () => OperatorProcess | undefined } = {},
): Owned {
  const owned = new Owned();
  afterEach(async ({ task }) => {
    const log = options.log?.();
    if (task.result?.state === "fail" && log) console.error(`tidemark ${log.role}'s log:\n${log.output.slice(-30_000)}`);
    const forge = options.forge?.();
    if (forge) expect(await forge.violations()).toEqual([]);
  });
  afterAll(async () => {
    await OperatorProcess.stopAll();
    await owned.release();
  });
  return owned;
}
