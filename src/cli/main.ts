import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { describeError } from "../core/errors.js";

const packageJson = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };

export const EXIT = { ok: 0, failed: 1, invalid: 2, unreachable: 3, usage: 64 } as const;

export function buildProgram(): Command {
  return new Command("tidemark")
    .description("GitOps for plain Linux hosts: a git repository is the source of truth, Tidemark makes the hosts follow over SSH.")
    .version(packageJson.version, "-V, --version", "print the version")
    .helpOption("-h, --help", "show help")
    .showHelpAfterError()
    .exitOverride();
}

/** Runs the CLI and returns the exit code, so tests and the bin share one path. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    if (program.args.length === 0 && argv.length <= 2) program.outputHelp();
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    process.stderr.write(`tidemark: ${describeError(error)}\n`);
    return EXIT.failed;
  }
}
