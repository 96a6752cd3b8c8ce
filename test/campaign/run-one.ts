import { writeFileSync } from "node:fs";
import type { Scenario } from "./scenario.js";

/**
 * Runs one scenario in this process and writes its report as JSON: the
 * campaign gives each scenario a process of its own, so that one past its
 * budget can be ended, and its bed collected, without touching the others.
 */
const [name, out] = process.argv.slice(2);
if (!name || !out) throw new Error("usage: run-one.ts SCENARIO OUT.json");
const scenario = ((await import(`./${name}.ts`)) as { default: Scenario }).default;
const report = await scenario((line) => console.log(`[${name}] ${new Date().toISOString().slice(11, 19)} ${line}`));
writeFileSync(out, JSON.stringify(report, null, 2));
process.exit(0);
