import { writeFileSync } from "node:fs";
import type { Bench } from "./section.js";

/** Runs one benchmark in this process and writes its sections as JSON (see bench/main.ts). */
const [name, out] = process.argv.slice(2);
if (!name || !out) throw new Error("usage: run-one.ts BENCH OUT.json");
const bench = ((await import(`./${name}.ts`)) as { default: Bench }).default;
const sections = await bench((line) => console.error(`[${name}] ${line}`));
writeFileSync(out, JSON.stringify(sections, null, 2));
process.exit(0);
