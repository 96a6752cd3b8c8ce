import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { median, ms, ratio } from "../test/helpers/report.js";
import { assertBuilt, BIN, spread, timedRun } from "./cli.js";
import type { Bench } from "./section.js";

/**
 * `tidemark --version` as a user runs it (the built CLI, a child process)
 * next to `node -e 0` (Node's own start, the floor), and next to Node
 * importing the CLI's entry module without running a command (what loading
 * costs), taking turns. `npm run bench -- startup`; TIDEMARK_BENCH_STARTS sets the runs.
 */
const RUNS = Number(process.env.TIDEMARK_BENCH_STARTS ?? 11);
const MAIN = pathToFileURL(new URL("../dist/cli/main.js", import.meta.url).pathname).href;
const COMMANDER = import.meta.resolve("commander");

const bench: Bench = async (log) => {
  assertBuilt();
  const version = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;
  const commands = {
    node: { label: "`node -e 0`", args: ["-e", "0"] },
    tidemark: { label: "`tidemark --version` (`node bin/tidemark.js --version`)", args: [BIN, "--version"] },
    load: {
      label: "`node -e 'await import(\"dist/cli/main.js\")'` (loading only, no command)",
      args: ["--input-type=module", "-e", `await import(${JSON.stringify(MAIN)})`],
    },
    commander: {
      label: "`node -e 'await import(\"commander\")'` (the argument parser alone)",
      args: ["--input-type=module", "-e", `await import(${JSON.stringify(COMMANDER)})`],
    },
  } as const;
  const names = Object.keys(commands) as Array<keyof typeof commands>;
  const samples: Record<keyof typeof commands, number[]> = { node: [], tidemark: [], load: [], commander: [] };
  // One unmeasured run each: the first start reads the files from disk.
  for (let round = 0; round <= RUNS; round++) {
    const order = round % 2 === 0 ? names : [...names].reverse();
    for (const name of order) {
      const run = await timedRun(process.execPath, commands[name].args, { env: { PATH: process.env.PATH } });
      if (run.code !== 0) throw new Error(`${commands[name].label} exited ${String(run.code)}: ${run.stderr}`);
      if (name === "tidemark" && run.stdout.trim() !== version)
        throw new Error(`tidemark --version printed ${JSON.stringify(run.stdout)}, not ${version}`);
      if (round > 0) samples[name].push(run.ms);
    }
  }
  log(`${RUNS} runs each: ${names.map((name) => `${name} ${ms(median(samples[name]))}`).join(", ")}`);
  const [node, tidemark, load, commander] = [
    median(samples.node),
    median(samples.tidemark),
    median(samples.load),
    median(samples.commander),
  ];
  const met = tidemark / node <= 1.5;
  return [
    {
      title: "CLI start: `tidemark --version` and `node -e 0`",
      setup: `Each a child process of the benchmark, spawn to exit, taking turns (the order alternates); median (min–max) of ${RUNS} runs after an unmeasured first one.`,
      header: ["command", "median (min–max)", "vs `node -e 0`"],
      rows: names.map((name) => [commands[name].label, spread(samples[name], ms), ratio(median(samples[name]), node)]),
      notes: [
        `\`tidemark --version\` takes ${ratio(tidemark, node)} the time of \`node -e 0\` (${ms(tidemark)} vs ${ms(node)}); goal: at most 1.5× (${met ? "met" : "missed"}).`,
        ...(met
          ? []
          : [
              `Of the ${ms(tidemark - node)} above Node's own start, loading the CLI's entry module and what it imports takes ${ms(load - node)}, of which commander alone ${ms(commander - node)}; the rest is running the command and exiting.`,
            ]),
      ],
    },
  ];
};
export default bench;
