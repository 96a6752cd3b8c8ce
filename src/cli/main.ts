import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { describeError, TidemarkError } from "../core/errors.js";
import { exitCodeOf } from "../core/error-codes.js";
import type { Flags } from "../config/settings.js";
import type { CommonFlags } from "./context.js";
import type { DeployFlags } from "./deploy.js";
import { EXIT } from "./exit-codes.js";
import type { RollbackFlags } from "./rollback.js";

const packageJson = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };

export interface Io {
  env: NodeJS.ProcessEnv;
  out: (text: string) => void;
  err: (text: string) => void;
  /** A person at a terminal, who can be asked; absent for scripts and tests. */
  ask?: (question: string) => Promise<boolean>;
}

const defaultIo: Io = {
  env: process.env,
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  ask: process.stdin.isTTY && process.stderr.isTTY ? askOnTerminal : undefined,
};

async function askOnTerminal(question: string): Promise<boolean> {
  const { createInterface } = await import("node:readline/promises");
  const readline = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await readline.question(question)).trim());
  } finally {
    readline.close();
  }
}

/** Every command that reads a config tree's secret files says where the key comes from. */
const SECRETS_HELP = `
Secret files (X.age, SOPS files) open with the age identities of
TIDEMARK_AGE_KEY_FILE (key files, comma-separated; never a flag). One that
does not open stops the command before any host is contacted (exit 2).`;

/** deploy and rollback report like the operator: the same settings, said where a person looks first. */
const REPORTING_HELP = `
Reporting: with TIDEMARK_GITHUB_TOKEN (or TIDEMARK_GITHUB_APP_ID, _KEY and
_INSTALLATION) set, as for serve, the deployment posts the operator's commit
statuses and GitHub Deployment (TIDEMARK_GITHUB_API_URL, TIDEMARK_GITHUB_REPO,
TIDEMARK_PUBLIC_URL and TIDEMARK_HOST_STATUSES apply). It keeps trying for at
most TIDEMARK_GITHUB_REPORT_TIMEOUT seconds (30) after the deployment, then
names on stderr what was not posted; the exit code stays the deployment's.
Without them it says once that nothing is reported. A plan that changes no
host deploys and records nothing ("no change").
${SECRETS_HELP}`;

export function buildProgram(io: Io, setExit: (code: number) => void): Command {
  const program = new Command("tidemark")
    .description("GitOps for plain Linux hosts: a git repository is the source of truth, Tidemark makes the hosts follow over SSH.")
    .version(packageJson.version, "-V, --version", "print the version")
    .helpOption("-h, --help", "show help")
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err });

  const common = (command: Command) =>
    command
      // The TIDEMARK_* variables are read by loadSettings, the one place that reads the environment.
      .option("--repo <url>", "the source repo, an http(s) clone URL; credentials as https://user:token@host/... (env: TIDEMARK_REPO)")
      .option("--store <path>", "the store, a bare git repository (env: TIDEMARK_STORE, default .tidemark/store.git)")
      .option("--store-remote <url>", "a git URL through which several workers share the store (env: TIDEMARK_STORE_REMOTE)")
      .option("--config <file>", "a YAML or JSON file with settings: repo, store, storeRemote, mirrors (env: TIDEMARK_CONFIG)")
      .option("--json", "print JSON for scripts");
  const run = async (work: () => Promise<number>) => setExit(await work());
  // Each command loads what it uses when it runs: --version and --help load nothing but the argument parser.
  const contextFor = async (flags: CommonFlags) => (await import("./context.js")).context(flags, io.env, io.out);

  common(program.command("validate").description("check tidemark.yaml and every environment's config tree; exit 2 if invalid"))
    .addHelpText("after", SECRETS_HELP)
    .option("--ref <ref>", "a branch, tag or commit (default: the default branch)")
    .action(function (this: Command) {
      const flags = this.opts<CommonFlags & { ref?: string }>();
      return run(async () => (await import("./validate.js")).validateCommand(await contextFor(flags), flags));
    });

  const secrets = program.command("secrets").description("the config tree's encrypted files (age, SOPS)");
  common(
    secrets
      .command("check")
      .description(
        "list the secret files the operator's age identities (TIDEMARK_AGE_KEY_FILE) cannot open, and those still encrypted to a recipient tidemark.yaml lists under secrets.retired; exit 2 if any",
      ),
  )
    .option("--ref <ref>", "a branch, tag or commit (default: the default branch)")
    .action(function (this: Command) {
      const flags = this.opts<CommonFlags & { ref?: string }>();
      return run(async () => (await import("./secrets.js")).secretsCheckCommand(await contextFor(flags), flags));
    });

  common(
    program
      .command("plan")
      .argument("<env>", "the environment")
      .description("show what a deployment of the environment would change, host by host"),
  )
    .option("--ref <ref>", "plan this branch, tag or commit instead of what the environment tracks")
    .option("--explain <host>", "list every file of the host's apps with the layer it comes from (and the template it is rendered from)")
    .addHelpText("after", SECRETS_HELP)
    .action(function (this: Command, environment: string) {
      const flags = this.opts<CommonFlags & { ref?: string; explain?: string }>();
      return run(async () => (await import("./plan.js")).planCommand(await contextFor(flags), environment, flags));
    });

  common(
    program
      .command("status")
      .argument("<env>", "the environment")
      .description("per host: the live deployment, and whether changes are pending"),
  ).action(function (this: Command, environment: string) {
    const flags = this.opts<CommonFlags>();
    return run(async () => (await import("./status.js")).statusCommand(await contextFor(flags), environment));
  });

  common(
    program
      .command("drift")
      .argument("<env>", "the environment")
      .description(
        "compare each host with the release recorded for it (one command per host): files, modes, owners, links, units; exit 5 on drift",
      ),
  )
    .option("--host <host>", "check only this host (repeat for more)", (value: string, hosts: string[] = []) => [...hosts, value])
    .option("--deep", "hash every file, not only those whose stat changed since the snapshot")
    .action(function (this: Command, environment: string) {
      const flags = this.opts<CommonFlags & { host?: string[]; deep?: boolean }>();
      return run(async () => (await import("./drift.js")).driftCommand(await contextFor(flags), environment, flags));
    });

  common(program.command("history").argument("<env>", "the environment").description("the environment's deployments, newest first"))
    .option("--limit <n>", "how many", (value) => Number.parseInt(value, 10), 50)
    .action(function (this: Command, environment: string) {
      const flags = this.opts<CommonFlags & { limit: number }>();
      return run(async () => (await import("./history.js")).historyCommand(await contextFor(flags), environment, flags));
    });

  common(
    program
      .command("deploy")
      .argument("<env>", "the environment")
      .description("deploy the environment over SSH: plan, confirm, apply host by host with automatic rollback, record"),
  )
    .option("--ref <ref>", "deploy this branch, tag or commit instead of what the environment tracks")
    .option("--yes", "do not ask for confirmation (needed without a terminal)")
    .option("--plan-only", "print the plan and stop")
    .option("--ssh-key <path>", "the operator's private key (env: TIDEMARK_SSH_KEY; default: the agent at SSH_AUTH_SOCK)")
    .option("--known-hosts <path>", "an OpenSSH known_hosts file, for hosts without hostKey in the inventory (env: TIDEMARK_KNOWN_HOSTS)")
    .option("--settle <seconds>", "how long units settle before they are checked", (value) => Number.parseFloat(value), 1)
    .addHelpText("after", REPORTING_HELP)
    .action(function (this: Command, environment: string) {
      const flags = this.opts<CommonFlags & DeployFlags>();
      const terminal = { interactive: io.ask !== undefined, ask: io.ask ?? (() => Promise.resolve(false)), err: io.err };
      return run(async () => (await import("./deploy.js")).deployCommand(await contextFor(flags), terminal, environment, flags));
    });

  common(
    program
      .command("rollback")
      .argument("<env>", "the environment")
      .argument("[target]", "a tag, a commit, or a deployment id from tidemark history (default: the deployment before the one live now)"),
  )
    .description(
      "go back to an earlier state in one command: moves a pinned tag, or pushes a revert (--revert), or deploys the recorded tree from the store and pins the environment",
    )
    .option(
      "--revert",
      "for an environment that tracks a branch: push a commit onto the branch whose tree is the target's, instead of pinning",
    )
    .option("--yes", "do not ask for confirmation (needed without a terminal)")
    .option("--force", "roll back past hooks marked irreversible (they have no down: what they did stays)")
    .option("--ssh-key <path>", "the operator's private key (env: TIDEMARK_SSH_KEY; default: the agent at SSH_AUTH_SOCK)")
    .option("--known-hosts <path>", "an OpenSSH known_hosts file, for hosts without hostKey in the inventory (env: TIDEMARK_KNOWN_HOSTS)")
    .option("--settle <seconds>", "how long units settle before they are checked", (value) => Number.parseFloat(value), 1)
    .addHelpText("after", REPORTING_HELP)
    .action(function (this: Command, environment: string, target: string | undefined) {
      const flags = this.opts<CommonFlags & RollbackFlags>();
      const terminal = { interactive: io.ask !== undefined, ask: io.ask ?? (() => Promise.resolve(false)), err: io.err };
      return run(async () =>
        (await import("./rollback.js")).rollbackCommand(await contextFor(flags), terminal, environment, target, flags),
      );
    });

  common(
    program
      .command("unpin")
      .argument("<env>", "the environment")
      .description("end a pin set by tidemark rollback: the environment follows its tracking rule again"),
  )
    .option("--redis <url>", "queue the deployment of where the environment tracks now on the operator's Redis (env: TIDEMARK_REDIS_URL)")
    .action(function (this: Command, environment: string) {
      const flags = this.opts<CommonFlags>();
      return run(async () => (await import("./rollback.js")).unpinCommand(await contextFor(flags), environment));
    });

  const service = (role: "serve" | "worker", description: string) =>
    program
      .command(role)
      .description(description)
      .option("--repo <url>", "the source repo, an http(s) clone URL; credentials as https://user:token@host/... (env: TIDEMARK_REPO)")
      .option("--redis <url>", "Redis: redis://[:password@]host:port[/db], rediss:// for TLS (env: TIDEMARK_REDIS_URL)")
      .option("--redis-ca <file>", "a PEM CA certificate for rediss:// (env: TIDEMARK_REDIS_CA)")
      .option(
        "--listen <host:port>",
        `where HTTP listens (env: TIDEMARK_LISTEN${role === "serve" ? "; default 127.0.0.1:8080" : "; default: no HTTP"})`,
      )
      .option(
        "--poll-interval <seconds>",
        "how often the source repo is polled for pushes webhooks missed; 0 turns polling off (env: TIDEMARK_POLL_INTERVAL, default 60)",
      )
      .option("--store <path>", "the store, a bare git repository (env: TIDEMARK_STORE, default .tidemark/store.git)")
      .option("--store-remote <url>", "a git URL through which several workers share the store (env: TIDEMARK_STORE_REMOTE)")
      .option("--ssh-key <path>", "the operator's private key (env: TIDEMARK_SSH_KEY; default: the agent at SSH_AUTH_SOCK)")
      .option("--known-hosts <path>", "an OpenSSH known_hosts file, for hosts without hostKey in the inventory (env: TIDEMARK_KNOWN_HOSTS)")
      .option("--settle <seconds>", "how long units settle before they are checked (env: TIDEMARK_SETTLE, default 1)")
      .option(
        "--takeover-after <seconds>",
        "how long a dead worker's deployment waits before another worker takes it over (env: TIDEMARK_TAKEOVER_AFTER, default 30)",
      )
      .option(
        "--shutdown-timeout <seconds>",
        "on SIGTERM, how long the hosts in flight may take before the process exits anyway (env: TIDEMARK_SHUTDOWN_TIMEOUT, default 60)",
      )
      .option("--config <file>", "a YAML or JSON file with settings, e.g. webhookSecrets: [old, new] (env: TIDEMARK_CONFIG)")
      .addHelpText(
        "after",
        "\nWebhook secrets come from TIDEMARK_WEBHOOK_SECRET (comma-separated, for rotation) or the config file, never from a flag: command lines are visible to every user of the machine.",
      )
      .action(function (this: Command) {
        const flags = this.opts<Flags>();
        return run(async () => (await import("./serve.js")).serviceCommand(role, flags, io.env));
      });
  service("serve", "run the operator: the webhook endpoint, the poller and a worker, in one process (logs: JSON lines on stdout)");
  service("worker", "run a worker only: start several, on several machines, against one Redis and one shared store");

  return program;
}

/** Runs the CLI and returns the exit code, so tests and the bin share one path. */
export async function main(argv: string[], io: Io = defaultIo): Promise<number> {
  let code: number = EXIT.ok;
  const program = buildProgram(io, (value) => (code = value));
  try {
    await program.parseAsync(argv);
    if (argv.length <= 2) program.outputHelp();
    return code;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    io.err(`tidemark: ${describeError(error)}\n`);
    return exitCodeOf(error instanceof TidemarkError ? error.code : undefined);
  }
}
