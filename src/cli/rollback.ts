import { TidemarkError } from "../core/errors.js";
import { renderPlan } from "../core/render-plan.js";
import type { SourceMirror } from "../git/mirror.js";
import { changesNothing, deployPlan, type DeployOptions } from "../pipeline/deploy.js";
import { prepareEnvironmentPlan, type PreparedPlan } from "../pipeline/plan-environment.js";
import { resolveEnvironment, resolveUserRef, trackEnvironment, type SourceCommit } from "../pipeline/read-source.js";
import { KnownHosts } from "../remote/known-hosts.js";
import { readSshKey } from "../remote/ssh-key.js";
import { newDeploymentId, type HistoryEntry } from "../store/store.js";
import { OperatorQueues } from "../queue/queues.js";
import { redisFactory } from "../queue/redis.js";
import { settingsRedactor } from "../config/settings.js";
import { openMirror, openStore, secretsOpener, type Context } from "./context.js";
import { deploymentExitCode, deploymentJson, summary, type Terminal } from "./deploy.js";
import { EXIT } from "./exit-codes.js";
import { deployReported } from "./reporting.js";

export interface RollbackFlags {
  revert?: boolean;
  yes?: boolean;
  /** Roll back past hooks that have no down (`irreversible: true`). */
  force?: boolean;
  settle: number;
}

const DEPLOYMENT_ID = /^\d{8}T\d{6}Z-[0-9a-f]{6}$/;
/** How far back `tidemark rollback` looks for a deployment id or a recorded commit. */
const HISTORY_DEPTH = 1000;

/**
 * `tidemark rollback <env> [target]`: back to a tag, a commit or a deployment
 * from `tidemark history` (default: the deployment before the one live now),
 * in the way that fits the environment's tracking rule:
 *   - a pin (`tag:`): the tag moves to the target and is pushed; the operator deploys it;
 *   - a branch with --revert: a commit whose tree is the target's is pushed onto the branch;
 *   - otherwise: the recorded tree is deployed from the store, here and now (the source repo
 *     may be down), and the environment is pinned until `tidemark unpin`.
 */
export async function rollbackCommand(
  ctx: Context,
  terminal: Terminal,
  environment: string,
  target: string | undefined,
  flags: RollbackFlags,
): Promise<number> {
  const mirror = await openMirror(ctx, { fetch: false });
  const reachable = await mirror.fetch().then(
    () => true,
    (error: unknown) => {
      if (!(error instanceof TidemarkError && error.code === "REPO_UNREACHABLE")) throw error;
      terminal.err(`warning: ${error.message}; using the local mirror as of its last fetch\n`);
      return false;
    },
  );
  const store = await openStore(ctx, environment);
  const { track } = await trackEnvironment(mirror, environment);
  const history = await store.history(environment, HISTORY_DEPTH);
  const wanted = await resolveTarget(mirror, history, environment, target);
  const needsRepo = (what: string) => {
    if (!reachable)
      throw new TidemarkError(
        "REPO_UNREACHABLE",
        `cannot ${what}: the source repo is unreachable`,
        `roll back from the store instead (without --revert), which needs no source repo${"tag" in track ? ", or move the tag when the repo is back" : ""}`,
      );
  };

  if ("tag" in track) {
    if (flags.revert)
      throw new TidemarkError(
        "USAGE",
        `${environment} tracks the tag ${track.tag}: rollback moves the tag; --revert is for environments that track a branch`,
        `run tidemark rollback ${environment} ${target ?? ""} without --revert`.trimEnd(),
      );
    needsRepo(`move the tag ${track.tag}`);
    const prepared = await prepareEnvironmentPlan(
      mirror,
      store,
      environment,
      { ref: `refs/tags/${track.tag}`, commit: wanted.commit },
      { open: secretsOpener(ctx) },
    );
    if (
      !(await confirm(
        ctx,
        terminal,
        prepared,
        `move the tag ${track.tag} to ${wanted.commit.slice(0, 7)} (${wanted.label}) and push it?`,
        flags,
      ))
    )
      return EXIT.ok;
    await mirror.pushRef(`refs/tags/${track.tag}`, wanted.commit, { force: true });
    return done(
      ctx,
      { action: "moved-tag", environment, tag: track.tag, commit: wanted.commit },
      `moved ${track.tag} to ${wanted.commit.slice(0, 7)} (${wanted.label}); the operator deploys it at the tag's push, or run tidemark deploy ${environment}\n`,
    );
  }

  if (flags.revert) {
    if (!("branch" in track))
      throw new TidemarkError(
        "USAGE",
        `${environment} tracks the tags ${track.tags}: --revert needs an environment that tracks a branch`,
        `run tidemark rollback ${environment} ${target ?? ""} without --revert (deploys the recorded tree and pins ${environment}), or push a new tag`,
      );
    needsRepo(`push a revert onto ${track.branch}`);
    const branch = (await mirror.refs()).branches.get(track.branch);
    if (!branch)
      throw new TidemarkError("REF_UNRESOLVED", `the branch ${track.branch} does not exist in the source repo`, "push the branch first");
    const tree = await mirror.reader.commitTree(wanted.commit);
    const prepared = await prepareEnvironmentPlan(
      mirror,
      store,
      environment,
      { ref: `refs/heads/${track.branch}`, commit: wanted.commit },
      { open: secretsOpener(ctx) },
    );
    if (
      !(await confirm(
        ctx,
        terminal,
        prepared,
        `push a commit onto ${track.branch} that restores the tree of ${wanted.commit.slice(0, 7)} (${wanted.label})?`,
        flags,
      ))
    )
      return EXIT.ok;
    const message = `Roll back ${environment} to ${wanted.commit.slice(0, 7)}\n\nThis restores the tree of ${wanted.commit} (${wanted.label}),\nas tidemark rollback ${environment} --revert asked.\n`;
    const commit = await mirror.writeCommit(tree, branch, message);
    await mirror.pushRef(`refs/heads/${track.branch}`, commit, { force: false });
    return done(
      ctx,
      { action: "pushed-revert", environment, branch: track.branch, commit, restores: wanted.commit },
      `pushed ${commit.slice(0, 7)} onto ${track.branch}, restoring ${wanted.commit.slice(0, 7)} (${wanted.label}); the operator deploys it as a rollback\n`,
    );
  }

  const entry =
    wanted.entry ??
    history.find(
      (candidate) =>
        candidate.sourceCommit === wanted.commit &&
        candidate.hosts.some((host) => host.outcome === "deployed" || host.outcome === "unchanged"),
    );
  if (!entry) {
    throw new TidemarkError(
      "ROLLBACK_TARGET_UNKNOWN",
      `${wanted.label} was never deployed to ${environment}: the store has no tree to go back to`,
      `${"branch" in track ? `use --revert to push it onto ${track.branch}, or ` : ""}deploy it with tidemark deploy ${environment} --ref ${target ?? wanted.commit}`,
    );
  }
  const pin = `return to ${entry.id} (${entry.sourceCommit.slice(0, 7)})`;
  const prepared = await prepareEnvironmentPlan(
    mirror,
    store,
    environment,
    { ref: entry.sourceRef, commit: entry.sourceCommit },
    { recorded: { tree: entry.tree }, open: secretsOpener(ctx) },
  );
  if (
    !(await confirm(
      ctx,
      terminal,
      prepared,
      `deploy the tree of ${entry.id} (${entry.sourceCommit.slice(0, 7)}) from the store and pin ${environment} until tidemark unpin ${environment}?`,
      flags,
    ))
  )
    return EXIT.ok;
  const options: Omit<DeployOptions, "id" | "redact"> = {
    ssh: { privateKey: ctx.settings.sshKey ? readSshKey(ctx.settings.sshKey) : undefined, agent: ctx.settings.sshAgent },
    knownHosts: ctx.settings.knownHosts ? KnownHosts.read(ctx.settings.knownHosts) : undefined,
    trigger: "rollback",
    settleMs: flags.settle * 1000,
    pin,
    observe: (host, phase) => terminal.err(`${host}: ${phase}\n`),
  };
  const pinned = `${environment} is pinned (${pin}): pushes are recorded, not deployed, until tidemark unpin ${environment}\n`;
  if (changesNothing(prepared)) {
    // Every host runs the target's tree already: no host is contacted and the commit hears nothing, but the pin asked for is still set and recorded.
    const deployment = await deployPlan(mirror, store, prepared, { ...options, redact: settingsRedactor(ctx.settings) });
    if (ctx.json) ctx.out(`${JSON.stringify({ ...deploymentJson(deployment), pin }, null, 2)}\n`);
    else ctx.out(`every host of ${environment} already runs the tree of ${entry.id}: nothing deployed\n${pinned}`);
    if (deployment.shareError) terminal.err(`warning: ${deployment.shareError}\n`);
    return EXIT.ok;
  }
  const { deployment, reported } = await deployReported(ctx, terminal.err, mirror, store, prepared, options);
  if (ctx.json) ctx.out(`${JSON.stringify({ ...deploymentJson(deployment), pin }, null, 2)}\n`);
  else ctx.out(`${summary(deployment)}${pinned}`);
  if (deployment.shareError) terminal.err(`warning: ${deployment.shareError}\n`);
  await reported();
  return deploymentExitCode(deployment);
}

/** Where to go back to: a deployment id, a tag or commit, or (none given) the deployment before the one live now. */
async function resolveTarget(
  mirror: SourceMirror,
  history: HistoryEntry[],
  environment: string,
  target: string | undefined,
): Promise<{ commit: string; label: string; entry?: HistoryEntry }> {
  if (target === undefined) {
    const deployments = history.filter((entry) => entry.trigger !== "unpin");
    const live = deployments.find((entry) => entry.hosts.some((host) => host.outcome === "deployed"));
    const before = live && deployments.find((entry) => entry.tree !== live.tree && entry.hosts.some((host) => host.outcome === "deployed"));
    if (!before)
      throw new TidemarkError(
        "ROLLBACK_TARGET_UNKNOWN",
        `${environment} has no earlier deployment to go back to`,
        `name a target: a tag, a commit, or a deployment id from tidemark history ${environment}`,
      );
    return { commit: before.sourceCommit, label: `deployment ${before.id}`, entry: before };
  }
  if (DEPLOYMENT_ID.test(target)) {
    const entry = history.find((candidate) => candidate.id === target);
    if (!entry)
      throw new TidemarkError(
        "ROLLBACK_TARGET_UNKNOWN",
        `no deployment ${target} in the history of ${environment}`,
        `pick an id from tidemark history ${environment}`,
      );
    return { commit: entry.sourceCommit, label: `deployment ${entry.id}`, entry };
  }
  const source: SourceCommit = await resolveUserRef(mirror, target);
  return { commit: source.commit, label: target };
}

async function confirm(ctx: Context, terminal: Terminal, prepared: PreparedPlan, question: string, flags: RollbackFlags): Promise<boolean> {
  (ctx.json ? terminal.err : ctx.out)(
    `source ${prepared.source.commit.slice(0, 7)} (${prepared.source.ref})${prepared.returnTo ? `, a return to ${prepared.returnTo.id}` : ""}\n${renderPlan(prepared.plan)}`,
  );
  const crossed = irreversibleHooks(prepared);
  if (crossed.length > 0 && !flags.force)
    throw new TidemarkError(
      "IRREVERSIBLE_HOOK",
      `rolling back ${prepared.plan.environment} goes back past hooks that have no down: ${crossed.join(", ")}; the files go back, what those hooks did does not`,
      "undo what they did yourself if it must be undone, then run the rollback again with --force",
    );
  if (flags.yes) return true;
  if (!terminal.interactive)
    throw new TidemarkError(
      "CONFIRMATION_NEEDED",
      "refusing to roll back without confirmation: no terminal to ask",
      "pass --yes to roll back from a script",
    );
  if (await terminal.ask(`${question} [y/N] `)) return true;
  terminal.err("nothing changed\n");
  return false;
}

/** The irreversible activate hooks of the releases this rollback takes hosts away from, as `web01: app/migrate`. */
function irreversibleHooks(prepared: PreparedPlan): string[] {
  return prepared.plan.hosts.flatMap((host) =>
    host.apps.flatMap((app) =>
      app.change === "added"
        ? []
        : (prepared.deployed.get(host.host)?.apps?.get(app.app)?.manifest?.hooks ?? [])
            .filter((hook) => hook.irreversible)
            .map((hook) => `${host.host}: ${app.app}/${hook.name}`),
    ),
  );
}

function done(ctx: Context, result: Record<string, unknown>, text: string): number {
  ctx.out(ctx.json ? `${JSON.stringify({ schema: "tidemark.rollback/v1", ...result }, null, 2)}\n` : text);
  return EXIT.ok;
}

/**
 * `tidemark unpin <env>`: the environment follows its tracking rule again.
 * Recorded in the store (an `unpin` entry); the operator deploys where the
 * rule points at its next poll, or at once when given Redis (--redis).
 */
export async function unpinCommand(ctx: Context, environment: string): Promise<number> {
  const store = await openStore(ctx, environment);
  const [head] = await store.history(environment, 1);
  if (!head?.pin) {
    ctx.out(`${environment} is not pinned\n`);
    return EXIT.ok;
  }
  await store.record(
    {
      id: newDeploymentId(),
      environment,
      sourceRepo: head.sourceRepo,
      sourceCommit: head.sourceCommit,
      sourceRef: head.sourceRef,
      trigger: "unpin",
      hosts: [],
    },
    head.tree,
  );
  await store.sync(environment);
  let next = "the operator deploys where it tracks now at its next poll (or give --redis to queue it now)";
  if (ctx.settings.redis) {
    const source = await resolveEnvironment(await openMirror(ctx), environment);
    const redis = redisFactory(ctx.settings.redis, ctx.settings.redisCa)({ maxRetriesPerRequest: 1 });
    try {
      await new OperatorQueues(redis).requestDeployment({ environment, trigger: "cli", requested: source });
    } finally {
      redis.disconnect();
    }
    next = `a deployment of ${source.commit.slice(0, 7)} (${source.ref}) is queued`;
  }
  ctx.out(`${environment} unpinned (was: ${head.pin}); ${next}\n`);
  return EXIT.ok;
}
