import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gcBeds } from "../bed/bed.js";
import { markdownTable, ms, provenance } from "../helpers/report.js";
import { passed, type ScenarioReport } from "./scenario.js";
import { SCENARIOS } from "./scenarios.js";

/**
 * The reliability campaign: every scenario in a process of its own, against
 * its own bed, each within its budget; writes docs/reliability.md from what
 * the runs counted. `npm run campaign [-- NAME...]`; exit 1 if any scenario failed.
 */
const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !SCENARIOS.some((scenario) => scenario.name === name));
if (unknown.length > 0)
  throw new Error(`no such scenario: ${unknown.join(", ")}; there are ${SCENARIOS.map((scenario) => scenario.name).join(", ")}`);
const chosen = SCENARIOS.filter((scenario) => wanted.length === 0 || wanted.includes(scenario.name));
const ONE = new URL("./run-one.ts", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "tidemark-campaign-"));
const started = Date.now();
const results: Array<{ name: string; ms: number; report: ScenarioReport }> = [];

try {
  for (const scenario of chosen) {
    console.log(`\n== ${scenario.name} (budget ${ms(scenario.budgetMs)})`);
    const out = join(dir, `${scenario.name}.json`);
    const begun = Date.now();
    const ended = await new Promise<string>((resolve) => {
      // A process group of its own: past its budget, the scenario and every operator process it started end together; gc below removes its bed.
      const child = spawn(process.execPath, ["--import", "tsx", ONE, scenario.name, out], {
        stdio: ["ignore", "inherit", "inherit"],
        detached: true,
      });
      const timer = setTimeout(() => process.kill(-child.pid!, "SIGKILL"), scenario.budgetMs);
      child.on("exit", (code, signal) => {
        clearTimeout(timer);
        resolve(signal ? `ended by ${signal}` : `exited ${String(code)}`);
      });
    });
    await gcBeds();
    const elapsed = Date.now() - begun;
    const report: ScenarioReport = existsSync(out)
      ? (JSON.parse(readFileSync(out, "utf8")) as ScenarioReport)
      : {
          title: scenario.name,
          what: "",
          deployments: 0,
          lost: 0,
          duplicated: 0,
          halfSwitched: 0,
          finalStatusMs: null,
          figures: [],
          findings: [`the scenario did not finish (${ended} after ${ms(elapsed)}; budget ${ms(scenario.budgetMs)}); see its output above`],
        };
    results.push({ name: scenario.name, ms: elapsed, report });
    console.log(`== ${scenario.name}: ${passed(report) ? "passed" : "FAILED"} in ${ms(elapsed)}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const failed = results.filter((result) => !passed(result.report));
const count = (n: number) => (n === 0 ? "0" : `**${n}**`);
const doc = [
  "# Reliability campaign",
  "",
  `Written by \`npm run campaign\`${wanted.length > 0 ? ` (${wanted.join(", ")})` : ""}; every figure below comes from that run. Each scenario runs against its own test bed (real systemd hosts in nspawn containers or plain sshd hosts, a real Redis, the git forge with its GitHub stand-in), with \`tidemark serve\` and \`tidemark worker\` as separate processes.`,
  "",
  provenance(),
  `- Campaign time: ${ms(Date.now() - started)}; ${results.length - failed.length} of ${results.length} scenarios passed`,
  "",
  "What each column counts: **lost**, a ref's final commit that a host which should run it never got; **duplicated**, one host given the same commit twice; **half-switched**, a host left with `target` ≠ `current`; **final status**, from the last push or fault until the final commit's last status was posted.",
  "",
  markdownTable(
    ["scenario", "deployments", "lost", "duplicated", "half-switched", "final status", "took", "result"],
    results.map(({ name, ms: took, report }) => [
      name,
      String(report.deployments),
      count(report.lost),
      count(report.duplicated),
      count(report.halfSwitched),
      report.finalStatusMs === null ? "–" : ms(report.finalStatusMs),
      ms(took),
      passed(report) ? "passed" : "**failed**",
    ]),
  ),
  "",
  ...results.flatMap(({ name, report }) => [
    `## ${report.title} (\`${name}\`)`,
    "",
    report.what,
    "",
    ...(report.figures.length > 0 ? [markdownTable(["measured", "value"], report.figures), ""] : []),
    ...(report.findings.length > 0 ? ["Findings:", "", ...report.findings.map((finding) => `- ${finding}`), ""] : []),
  ]),
].join("\n");
mkdirSync("docs", { recursive: true });
writeFileSync("docs/reliability.md", doc);
console.log(`\nwrote docs/reliability.md: ${results.length - failed.length}/${results.length} scenarios passed`);
if (failed.length > 0) process.exitCode = 1;
