import { main } from "../../src/cli/main.js";

/** The CLI as its own process, for tests that kill it: `node --import tsx tidemark-process.ts ARGS`. */
process.exitCode = await main(process.argv);
