import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gcBeds } from "../test/bed/bed.js";
import { markdownTable, ms, provenance } from "../test/helpers/report.js";
import type { BenchSection } from "./section.js";

/**
 * The benchmark report. `npm run bench` runs every benchmark, each in a
 * process of its own against its own bed, and writes docs/benchmarks.md;
 * `npm run bench -- NAME...` runs some and prints their sections only.
 */
const BENCHES = ["deploy", "light-hosts", "startup", "rollback", "operator", "git-fetch", "plan", "scale-out", "page"];
const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !BENCHES.includes(name));
if (unknown.length > 0) throw new Error(`no such benchmark: ${unknown.join(", ")}; there are ${BENCHES.join(", ")}`);
const chosen = wanted.length > 0 ? wanted : BENCHES.filter((name) => existsSync(new URL(`./${name}.ts`, import.meta.url)));
const ONE = new URL("./run-one.ts", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "tidemark-bench-"));
const started = Date.now();
const sections: BenchSection[] = [];
const failures: string[] = [];

try {
  // The benchmarks time the built CLI (bin/tidemark.js on dist/), as users run it: built from the sources as they are now.
  console.error("== build: tsc -p tsconfig.build.json");
  const tsc = new URL("../node_modules/typescript/bin/tsc", import.meta.url).pathname;
  const built = await new Promise<number | null>((resolve) =>
    spawn(process.execPath, [tsc, "-p", "tsconfig.build.json"], { stdio: ["ignore", "inherit", "inherit"] }).on("exit", resolve),
  );
  if (built !== 0) throw new Error(`the build failed (tsc exited ${String(built)}): the benchmarks would time a stale CLI`);
  for (const name of chosen) {
    console.error(`\n== ${name}`);
    const out = join(dir, `${name}.json`);
    const begun = Date.now();
    const code = await new Promise<number | null>((resolve) =>
      spawn(process.execPath, ["--import", "tsx", ONE, name, out], { stdio: ["ignore", "inherit", "inherit"] }).on("exit", resolve),
    );
    await gcBeds();
    if (code !== 0 || !existsSync(out)) {
      failures.push(`${name} exited ${String(code)}`);
      continue;
    }
    const measured = JSON.parse(readFileSync(out, "utf8")) as BenchSection[];
    sections.push(...measured);
    for (const section of measured) console.log(`\n${render(section)}`);
    console.error(`== ${name} took ${ms(Date.now() - begun)}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

function render(section: BenchSection): string {
  return [
    `## ${section.title}`,
    "",
    section.setup,
    "",
    markdownTable(section.header, section.rows),
    "",
    ...section.notes.map((note) => `- ${note}`),
  ].join("\n");
}

if (failures.length > 0) {
  console.error(`\nbenchmarks failed: ${failures.join("; ")}; docs/benchmarks.md left as it was`);
  process.exitCode = 1;
} else if (wanted.length === 0) {
  const doc = [
    "# Benchmarks",
    "",
    "Written by `npm run bench`; every figure below comes from that run. Each comparison is measured side by side in one run (the tools take turns, round by round) and reported as medians and ratios, because the machine is shared and noisy. Each benchmark brings up its own test bed: real systemd hosts in nspawn containers, plain sshd hosts on loopback, a real Redis and the git forge.",
    "",
    provenance(),
    `- Report time: ${ms(Date.now() - started)}`,
    "",
    ...sections.map((section) => `${render(section)}\n`),
  ].join("\n");
  mkdirSync("docs", { recursive: true });
  writeFileSync("docs/benchmarks.md", doc);
  console.error("\nwrote docs/benchmarks.md");
}
