import { createHash } from "node:crypto";
import { hostname } from "node:os";
import { dirname } from "node:path";
import type { AppTree, HostTree } from "../core/config.js";
import { describeError, TidemarkError } from "../core/errors.js";
import type { HostOutcome, HostRecord } from "../core/outcome.js";
import { planHost, type HostPlan } from "../core/plan.js";
import { Semaphore } from "../core/semaphore.js";
import { splitCredentials } from "../git/credentials.js";
import {
  checkScript,
  commitScript,
  diskSpaceScript,
  HOST_ROOT,
  inspectScript,
  journalScript,
  LOCK_CONFLICT_EXIT,
  lockCommand,
  parseDiskSpace,
  parseUnitStates,
  partialDir,
  restartScript,
  sealScript,
  stageScript,
  switchScript,
  unitFailed,
  unitStateScript,
  type RemoteCommand,
  type RemoteUser,
  type SealApp,
  type StageApp,
} from "./commands.js";
import { hostChanges, type HostChanges } from "./host-changes.js";
import { httpCheck } from "./http-check.js";
import type { SshSession, SshTarget } from "./ssh-session.js";

/** The steps of one host's apply, in order; after `rollback`, the switch, restart and check steps come again, backwards. */
export const HOST_PHASES = ["connect", "lock", "inspect", "upload", "switch", "restart", "check", "rollback", "commit"] as const;
export type HostPhase = (typeof HOST_PHASES)[number];

/** Everything needed to apply one host's plan; the trees carry the files and manifests of both sides. */
export interface HostJob {
  deploymentId: string;
  target: SshTarget;
  plan: HostPlan;
  desired: HostTree | undefined;
  deployed: HostTree | undefined;
  /** A file's bytes, by blob oid. */
  blob: (oid: string) => Promise<Uint8Array>;
  settleMs: number;
  keepReleases: number;
  /** false for `onFailure: halt`: a failing host is left as it is, for a person to look at. */
  rollBack: boolean;
  /** How people know what the host ran before (the source commit), for "rolled back to 1a2b3c4". */
  previousLabel?: string;
  /**
   * The plan again, from the host tree the host runs when it is not the one
   * the store names (a run cut after the host's commit, before its record);
   * undefined when that tree is unknown here.
   */
  replan?: (live: string) => Promise<Replanned | undefined>;
}

/** A host's plan made again from what the host runs. */
export interface Replanned {
  plan: HostPlan;
  desired: HostTree | undefined;
  deployed: HostTree;
}

export interface HostResult extends HostRecord {
  /** How long the host took, connect to commit (and rollback): set by the deployment, for metrics and JSON. */
  durationMs?: number;
}

export type PhaseObserver = (host: string, phase: HostPhase) => void;

/** What failed after the switch: a value handed back, never thrown. */
interface Failure {
  detail: string;
  log?: string;
}

/**
 * One host, one deployment (docs/hosts.md's phases): lock, check the host
 * runs what the store says, upload only what changed into new release dirs,
 * switch, restart, check; on failure, every app of the host goes back to
 * `previous` with no upload. The outcome is data; only programming errors throw.
 */
export async function applyHost(
  planned: HostJob,
  connect: (target: SshTarget) => Promise<SshSession>,
  observe: PhaseObserver = () => undefined,
): Promise<HostResult> {
  let job = planned;
  const host = job.plan.host;
  let replannedFrom: string | undefined;
  let uploadedBytes: number | undefined;
  const outcome = (kind: HostOutcome["outcome"], reason?: string, log?: string): HostResult => {
    const detail = [replannedFrom, reason].filter(Boolean).join("; ");
    return {
      host,
      outcome: kind,
      ...(detail ? { detail } : {}),
      ...(log ? { log } : {}),
      ...(uploadedBytes !== undefined ? { uploadedBytes } : {}),
    };
  };
  const user: RemoteUser = job.target.user === "root" ? "root" : { sudo: job.target.user };

  observe(host, "connect");
  let session: SshSession;
  try {
    session = await connect(job.target);
  } catch (error) {
    return outcome("unreachable", describeError(error));
  }
  let switched = false;
  try {
    observe(host, "lock");
    const lock = await session.hold(lockCommand(user, `deployment ${job.deploymentId} from ${hostname()} (pid ${process.pid})`), "locked");
    if (!lock.held) {
      if (lock.result.code === LOCK_CONFLICT_EXIT)
        return outcome(
          "unreachable",
          `locked: another deployment is running on ${host} (${lock.result.stdout.trim() || "holder unknown"}); it is freed when that deployment's SSH session ends`,
        );
      return outcome(
        "unreachable",
        `could not take the host lock on ${host}: ${lock.result.stderr.trim() || `exit ${String(lock.result.code)}`}`,
      );
    }

    let forward = hostChanges(job.plan, job.desired, job.deployed, "forward");
    observe(host, "inspect");
    let state = await inspect(session, user, forward);
    const live = state.tree;
    if (live !== job.plan.from) {
      // The host already runs the target: a run cut after the host's `current` was written but before the store heard of it.
      if (live === job.plan.to) return outcome("deployed", "already live on the host (a previous run was cut before it was recorded)");
      // A run cut the same way, with a newer commit since: plan again from the tree the host runs, if it is one of ours.
      const replanned = live !== null && /^[0-9a-f]{40}$/.test(live) ? await job.replan?.(live) : undefined;
      const unknown = live === null ? "" : ", a tree found in neither the source repo nor the store";
      if (!replanned)
        return outcome(
          "failed",
          `stale plan: ${host} runs ${short(live)}${unknown} but the store expects ${short(job.plan.from)}; nothing was changed. Another operator deployed without sharing the store (--store-remote); record or re-plan before deploying`,
        );
      job = { ...job, ...replanned, previousLabel: undefined };
      replannedFrom = `planned again from ${short(live)}, which ${host} runs: the store expected ${short(planned.plan.from)} (a run was cut before it was recorded)`;
      forward = hostChanges(job.plan, job.desired, job.deployed, "forward");
      state = await inspect(session, user, forward);
    }

    observe(host, "upload");
    try {
      uploadedBytes = await upload(session, user, job, forward, state.apps);
    } catch (error) {
      return outcome("failed", `upload failed, nothing switched: ${describeError(await explain(session, user, error))}`);
    }

    switched = true;
    const failure = await switchAndCheck(session, user, forward, job.settleMs, (phase) => observe(host, phase));
    if (!failure) {
      observe(host, "commit");
      await run(
        session,
        commitScript(
          user,
          job.deploymentId,
          job.plan.to,
          job.plan.apps.map((app) => app.app),
          job.keepReleases,
        ),
        "record the host's current deployment",
      );
      return outcome("deployed");
    }

    if (!job.rollBack) return outcome("failed", `${failure.detail}; left as it is (rollout.onFailure: halt)`, failure.log);
    observe(host, "rollback");
    const reversePlan = planHost(host, job.deployed, job.desired);
    if (!reversePlan) return outcome("rollback-failed", `${failure.detail}; nothing to roll back to`, failure.log);
    const reverse = hostChanges(reversePlan, job.deployed, job.desired, "rollback");
    const missing = reversePlan.apps.filter((app) => app.release !== null && state.apps.get(app.app)?.baseExists !== true);
    if (missing.length > 0)
      return outcome(
        "rollback-failed",
        `${failure.detail}; rollback impossible: the previous release of ${missing.map((app) => app.app).join(", ")} is gone from the host`,
        failure.log,
      );
    const rollbackFailure = await switchAndCheck(session, user, reverse, job.settleMs, (phase) => observe(host, phase));
    const back = job.plan.from === null ? "the host is empty again" : `rolled back to ${job.previousLabel ?? short(job.plan.from)}`;
    if (rollbackFailure)
      return outcome(
        "rollback-failed",
        `${failure.detail}; the rollback failed too: ${rollbackFailure.detail}`,
        [failure.log, rollbackFailure.log].filter(Boolean).join("\n---\n"),
      );
    return outcome("rolled-back", `${failure.detail}; ${back}`, failure.log);
  } catch (error) {
    const when = switched
      ? "after the switch began; the host may run the new release unchecked. Run the deployment again: it converges"
      : "nothing switched";
    return outcome("failed", `${describeError(await explain(session, user, error))} (${when})`);
  } finally {
    session.close();
  }
}

interface AppState {
  current: string | null;
  releaseExists: boolean;
  baseExists: boolean;
}

async function inspect(
  session: SshSession,
  user: RemoteUser,
  changes: HostChanges,
): Promise<{ tree: string | null; apps: Map<string, AppState> }> {
  const apps = changes.plan.apps;
  const { stdout } = await run(
    session,
    inspectScript(
      user,
      apps.map((app) => ({ app: app.app, release: app.release, base: app.previousRelease })),
    ),
    "inspect the host",
  );
  const [currentLine = "-", ...appLines] = stdout.split("\n");
  const tree = currentLine.trim().split(" ")[1];
  const state = new Map<string, AppState>();
  apps.forEach((app, i) => {
    const [current = "-", release = "0", base = "0"] = (appLines[i] ?? "").split(" ");
    state.set(app.app, { current: current === "-" ? null : current, releaseExists: release === "1", baseExists: base === "1" });
  });
  return { tree: tree === undefined || tree === "-" ? null : tree, apps: state };
}

/** New release dirs for the apps whose release is not on the host yet: hard links to the base for unchanged files, SFTP for the rest. Returns the bytes sent. */
async function upload(
  session: SshSession,
  user: RemoteUser,
  job: HostJob,
  changes: HostChanges,
  state: Map<string, AppState>,
): Promise<number> {
  const stage: StageApp[] = [];
  const work: Array<{ app: string; release: string; path: string; oid: string; mode: string }> = [];
  for (const app of changes.plan.apps) {
    if (app.release === null || state.get(app.app)?.releaseExists) continue;
    const tree = changes.incoming.get(app.app) as AppTree;
    const base = app.previousRelease !== null && state.get(app.app)?.baseExists ? app.previousRelease : null;
    const send =
      base === null ? [...(tree.files?.keys() ?? [])] : app.files.filter((file) => file.change !== "removed").map((file) => file.path);
    const drop = base === null ? [] : app.files.filter((file) => file.change !== "added").map((file) => file.path);
    stage.push({
      app: app.app,
      release: app.release,
      base,
      drop,
      dirs: [...new Set(send.map((path) => dirname(path)).filter((dir) => dir !== "."))].sort(),
    });
    for (const path of send) {
      const file = tree.files!.get(path)!;
      work.push({ app: app.app, release: app.release, path, oid: file.oid, mode: file.mode });
    }
  }
  // `target` is written even when every release is on the host already (a revert, or a run taken over after a crash).
  await run(session, stageScript(user, job.deploymentId, job.plan.to, stage), "prepare the release dirs");
  if (stage.length === 0) return 0;
  let bytes = 0;
  const sftp = await session.sftp();
  // ssh2 never calls back a write whose channel died: the channel's end fails them all.
  const lost = new Promise<never>((_, reject) => {
    const fail = () => reject(new Error("the SFTP channel closed mid-upload"));
    sftp.once("close", fail).once("error", fail);
  });
  lost.catch(() => undefined);
  const sums = new Map<string, SealApp>(stage.map((app) => [app.app, { app: app.app, release: app.release, uploaded: [] }]));
  const slots = new Semaphore(16);
  await Promise.all(
    work.map((file) =>
      slots.run(async () => {
        const data = Buffer.from(await job.blob(file.oid));
        const written = new Promise<void>((resolve, reject) => {
          sftp.writeFile(
            `${partialDir(file.app, file.release)}/${file.path}`,
            data,
            { mode: file.mode === "100755" ? 0o555 : 0o444 },
            (error) => (error ? reject(error) : resolve()),
          );
        });
        await Promise.race([written, lost]);
        bytes += data.length;
        sums.get(file.app)!.uploaded.push({ path: file.path, sha256: createHash("sha256").update(data).digest("hex") });
      }),
    ),
  );
  await run(session, sealScript(user, [...sums.values()]), "verify and seal the releases");
  return bytes;
}

/** Switches, restarts, waits for the units to settle and checks them and the app checks; returns what failed, if anything. */
async function switchAndCheck(
  session: SshSession,
  user: RemoteUser,
  changes: HostChanges,
  settleMs: number,
  step: (phase: "switch" | "restart" | "check") => void,
): Promise<Failure | undefined> {
  step("switch");
  const switched = await execute(session, switchScript(user, changes.switch));
  if (switched.code !== 0)
    return { detail: `the switch failed: ${lastLine(switched.stderr) || `exit ${String(switched.code)}`}`, log: switched.stderr };
  step("restart");
  const restart = restartScript(user, changes.switch);
  const restarted = restart ? await execute(session, restart) : undefined;
  if (restarted && restarted.code !== 0)
    return {
      detail: `systemd could not reload its units: ${lastLine(restarted.stderr) || `exit ${String(restarted.code)}`}`,
      log: restarted.stderr,
    };
  step("check");
  if (changes.units.length > 0) {
    const { stdout } = await run(session, unitStateScript(user, changes.units, settleMs), "read the units' state");
    const failed = parseUnitStates(stdout).filter(unitFailed);
    if (failed.length > 0) {
      const journal = await Promise.all(
        failed.map(async (unit) => `${unit.unit}:\n${(await execute(session, journalScript(user, unit.unit))).stdout.trimEnd()}`),
      );
      const detail = failed
        .map((unit) => `${unit.unit} ${unit.activeState === "failed" ? "failed" : unit.activeState} (${unit.result})`)
        .join(", ");
      return { detail, log: journal.join("\n") };
    }
  } else if (settleMs > 0 && changes.checks.length > 0) {
    await new Promise((resolve) => setTimeout(resolve, settleMs));
  }
  for (const { app, check } of changes.checks) {
    const name = check.name ?? ("command" in check ? check.command : splitCredentials(check.http).url);
    if ("command" in check) {
      const result = await execute(session, checkScript(user, app, check.command, check.timeoutSeconds));
      if (result.code !== 0)
        return {
          detail: `check ${JSON.stringify(name)} of ${app} failed (exit ${String(result.code)})`,
          log: `${result.stdout}${result.stderr}`.trimEnd(),
        };
    } else {
      const problem = await httpCheck(session, check.http, check.status, check.timeoutSeconds * 1000);
      if (problem) return { detail: `check ${JSON.stringify(name)} of ${app} failed: ${problem}` };
    }
  }
  return undefined;
}

/** Below this much free space, a step that failed on the host is put down to a full disk. */
const DISK_FULL_BYTES = 1024 * 1024;

/**
 * Names the cause of a failed step where the error alone does not: a
 * connection that went away makes SFTP say "No response from server"; a host
 * whose disk is full makes SFTP answer "Failure" and sh "I/O error", so the
 * host is asked for its free space. Any other error is returned as it is.
 */
async function explain(session: SshSession, user: RemoteUser, error: unknown): Promise<unknown> {
  if (!session.alive) {
    if (error instanceof TidemarkError) return error;
    return new TidemarkError(
      "SSH_CONNECTION_LOST",
      `${session.target.name}: the connection was lost (${describeError(error)})`,
      "check the host and the network; run the deployment again: every step is idempotent",
      { cause: error },
    );
  }
  try {
    const { stdout } = await run(session, diskSpaceScript(user), "read the free space");
    const space = parseDiskSpace(stdout);
    if (!space || space.availableBytes >= DISK_FULL_BYTES) return error;
    const kib = (bytes: number) => `${Math.floor(bytes / 1024)} KiB`;
    return new TidemarkError(
      "HOST_DISK_FULL",
      `${session.target.name}'s disk is full (${kib(space.availableBytes)} free of ${kib(space.totalBytes)} in ${HOST_ROOT}): ${describeError(error)}`,
      `free space on ${session.target.name} (df -h ${HOST_ROOT}), then deploy again (the next push, or tidemark deploy)`,
      { cause: error },
    );
  } catch {
    return error;
  }
}

const execute = (session: SshSession, remote: RemoteCommand) => session.exec(remote.line, remote.input);

async function run(session: SshSession, remote: RemoteCommand, what: string): Promise<{ stdout: string }> {
  const result = await execute(session, remote);
  if (result.code !== 0)
    throw new Error(`could not ${what} on ${session.target.name}: ${lastLine(result.stderr) || `exit ${String(result.code)}`}`);
  return result;
}

const lastLine = (text: string) => text.trim().split("\n").at(-1) ?? "";
const short = (tree: string | null) => (tree === null ? "nothing" : tree.slice(0, 7));
