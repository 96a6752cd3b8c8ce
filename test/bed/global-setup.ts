import { gcBeds, listBeds } from "./bed.js";
import { settledLeftovers } from "./leftovers.js";
import { ensureRootfs } from "./rootfs.js";

/**
 * Once per test run: clear beds a killed earlier run left, build the root fs
 * (cold: ~50 s), and at the end fail the run if any test left anything behind.
 */
export async function setup(): Promise<void> {
  const removed = await gcBeds();
  if (removed.length > 0) console.warn(`test bed: removed beds left by an earlier, interrupted run: ${removed.join(", ")}`);
  await ensureRootfs();
}

export async function teardown(): Promise<void> {
  const forgotten = await gcBeds();
  const kept = listBeds()
    .filter((bed) => bed.owner === null)
    .map((bed) => bed.id);
  const leftovers = kept.length > 0 ? [] : await settledLeftovers();
  if (forgotten.length > 0 || leftovers.length > 0) {
    throw new Error(
      `the test suite left things behind: ${[...forgotten.map((id) => `bed ${id} (never torn down)`), ...leftovers].join("; ")}`,
    );
  }
}
