import { defineConfig } from "vitest/config";

/**
 * Two projects, both run by `npm test`: `unit` (no I/O beyond temp dirs and
 * loopback, no root, no test bed: `npx vitest run --project unit`) and
 * `integration` (against the test bed). The bed's global setup belongs to
 * `integration` alone: a global setup of the root config runs for every
 * project, and would build the bed's root fs (root, a Debian mirror) before
 * a single unit test.
 */
export default defineConfig({
  test: {
    // Test beds boot real containers; two files at a time fit two cores.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    // One reporter for the whole run: the closing summary line is printed once.
    reporters: ["default", "./test/summary-reporter.ts"],
    projects: [
      {
        extends: true,
        // Worker threads start faster than forked processes: a third off the unit run's wall time.
        test: { name: "unit", include: ["test/unit/**/*.test.ts"], pool: "threads" },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          globalSetup: ["test/bed/global-setup.ts"],
        },
      },
    ],
  },
});
