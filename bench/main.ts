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
const BENCHES = ["deploy", "light-hosts", "startup", "rollback", "operator", "git-fetch", "plan", "scale-out", "page", "drift"];
// `--update NAME...` measures some benchmarks again and puts their sections in docs/benchmarks.md, each marked as measured apart.
const update = process.argv[2] === "--update";
const wanted = process.argv.slice(update ? 3 : 2);
if (update && wanted.length === 0) throw new Error("--update needs the benchmarks to measure again, e.g. --update plan");
const unknown = wanted.filter((name) => !BENCHES.includes(name));
if (unknown.length > 0) throw new Error(`no such benchmark: ${unknown.join(", ")}; there are ${BENCHES.join(", ")}`);
const chosen = wanted.length > 0 ? wanted : BENCHES.filter((name) => existsSync(new URL(`./${name}.ts`, import.meta.url)));
const ONE = new URL("./run-one.ts", import.meta.url).pathname;
const INTRO =
  "Written by `npm run bench`; every figure below comes from that run, except a section marked as measured apart (`npm run bench -- --update NAME`), which says when. Each comparison is measured side by side in one run (the tools take turns, round by round) and reported as medians and ratios, because the machine is shared and noisy. Each benchmark brings up its own test bed: real systemd hosts in nspawn containers, plain sshd hosts on loopback, a real Redis and the git forge.";
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
} else if (update) {
  writeFileSync("docs/benchmarks.md", updated(readFileSync("docs/benchmarks.md", "utf8"), sections));
  console.error(`\nupdated docs/benchmarks.md: ${sections.map((section) => section.title).join("; ")}`);
} else if (wanted.length === 0) {
  const doc = [
    "# Benchmarks",
    "",
    INTRO,
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

/**
 * The report with some sections measured again: each replaces the section of
 * its title (a new one follows the section measured before it), and says
 * when and where it was measured, apart from the run the rest comes from.
 */
function updated(doc: string, measured: readonly BenchSection[]): string {
  const parts = doc.split(/^(?=## )/m);
  const head = parts.shift()!.replace(/^Written by `npm run bench`.*$/m, INTRO);
  const apart = `*Measured apart from the rest, by \`npm run bench -- --update\`:*\n\n${provenance()}`;
  let after = parts.length - 1;
  for (const section of measured) {
    const text = `${render(section)}\n\n${apart}\n\n`;
    const at = parts.findIndex((part) => part.startsWith(`## ${section.title}\n`));
    if (at >= 0) parts[at] = text;
    else parts.splice(after + 1, 0, text);
    after = at >= 0 ? at : after + 1;
  }
  return head + parts.join("");
}
