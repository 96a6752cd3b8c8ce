import { createHash, randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { AppTree, HostTree } from "../core/config.js";
import type { FileEntry } from "../core/tree.js";
import { describeError, TidemarkError } from "../core/errors.js";
import { IRREVERSIBLE, type HookRecord, type HostOutcome, type HostRecord } from "../core/outcome.js";
import { hostHooks, rollbackHooks, type HostHook } from "../core/hooks.js";
import { planHost, type HostPlan } from "../core/plan.js";
import { splitCredentials } from "../git/credentials.js";
import { mayBeSops, secretKind, type SecretKind, type SecretOpener } from "../secrets/secret-files.js";
import { appDir, HOST_ROOT, LOCK_CONFLICT_EXIT, SECRET_KEY_CHARS, type RemoteUser, type StageApp, type StageFile } from "./commands.js";
import type { HostConnections, HostLease } from "./connections.js";
import { hostChanges, type HostChanges } from "./host-changes.js";
import { readActivation, type ActivationReport, type CheckNames, type Failure, type HookName } from "./host-report.js";
import { httpCheck } from "./http-check.js";
import { hostShell, type Mark, type RemoteShell, type ShellReply } from "./remote-shell.js";
import {
  activateScript,
  confirmScript,
  inspectScript,
  lockScript,
  releaseScript,
  rollbackScript,
  type HookRun,
  type HostChecks,
  type Undo,
} from "./session-scripts.js";
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
  /** Opens the secret files this host gets; without it, an app with a secret file fails before anything is sent. */
  open?: SecretOpener;
  /**
   * Every file of an app of a host tree, read whole: a plan leaves unread
   * the directories both sides share, and a release whose base is gone from
   * its host is built from nothing.
   */
  wholeApp: (host: string, hostTree: string, app: string) => Promise<ReadonlyMap<string, FileEntry>>;
  settleMs: number;
  keepReleases: number;
  /** false for `onFailure: halt`: a failing host is left as it is, for a person to look at. */
  rollBack: boolean;
  /** After the switch, the host switches back by itself this long after the switch unless this deployment confirms (rollout.confirmSeconds). */
  confirmSeconds: number;
  /** How people know what the host ran before (the source commit), for "rolled back to 1a2b3c4". */
  previousLabel?: string;
  /** The source commit deployed, and the one the host ran before (when known): for hooks' TIDEMARK_TO and TIDEMARK_FROM. */
  sourceCommit: string;
  previousCommit?: string;
  /** The deployment returns the host to an earlier tree (a revert, tidemark rollback, rollback-all): the outgoing releases' rollback hooks run. */
  returning: boolean;
  /** This host is the first of the rollout: it runs the `on: once` hooks. */
  once: boolean;
  /**
   * The host gets again what it runs (drift `heal`): the plan brings the
   * apps that drifted as if new, and there is no way back, since what the
   * host had was the drift.
   */
  heal?: boolean;
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

/**
 * One host, one deployment (docs/hosts.md's phases), in three round trips
 * over one shell on the host: (1) lock, and check the host runs what the
 * store says; (2) upload only what changed into new release dirs, arm the
 * host's own undo, switch, restart, check, and on failure switch back, all
 * in one script; (3) confirm: record, collect, disarm. HTTP checks, when an
 * app has them, run between (2) and (3) through the connection. The outcome
 * is data; only programming errors throw.
 */
export async function applyHost(
  planned: HostJob,
  connections: HostConnections,
  observe: PhaseObserver = () => undefined,
): Promise<HostResult> {
  let job = planned;
  const host = job.plan.host;
  let replannedFrom: string | undefined;
  let uploadedBytes: number | undefined;
  const undone: string[] = [];
  const rebuilt: string[] = [];
  const outcome = (kind: HostOutcome["outcome"], reason?: string, log?: string): HostResult => {
    const detail = [...undone.map((note) => `rolled itself back before this deployment: ${note}`), replannedFrom, ...rebuilt, reason]
      .filter(Boolean)
      .join("; ");
    return {
      host,
      outcome: kind,
      ...(detail ? { detail } : {}),
      ...(log ? { log } : {}),
      ...(uploadedBytes !== undefined ? { uploadedBytes } : {}),
      ...(ranHooks.length > 0 ? { hooks: ranHooks } : {}),
    };
  };
  const ranHooks: HookRecord[] = [];
  const user: RemoteUser = job.target.user === "root" ? "root" : { sudo: job.target.user };
  let phase = "connect" as HostPhase;
  const enter = (next: HostPhase) => {
    phase = next;
    observe(host, next);
  };
  // The host says where it is as it goes: the timeline, and a kill at a given phase, follow the host.
  const onMark = (mark: Mark) => {
    if (mark.kind === "undone") undone.push(mark.text);
    if (mark.kind === "phase" && (HOST_PHASES as readonly string[]).includes(mark.text)) enter(mark.text as HostPhase);
  };

  enter("connect");
  let lease: HostLease;
  try {
    lease = await connections.lease(job.target);
  } catch (error) {
    return outcome("unreachable", describeError(error));
  }
  let shell: RemoteShell | undefined;
  // Whether our shell may hold the host lock: a shell that stops half-way is closed, and the lock goes with it.
  let locked = false;
  try {
    let forward = hostChanges(job.plan, job.desired, job.deployed, "forward");
    const owner = `deployment ${job.deploymentId} from ${hostname()} (pid ${process.pid})`;
    enter("lock");
    let first: ShellReply;
    try {
      locked = true;
      shell = (await hostShell(lease.session, user)).shell;
      first = await shell.run(lockScript(owner, inspected(forward)), [], onMark);
    } catch (error) {
      if (error instanceof TidemarkError && error.code === "HOST_SHELL_FAILED")
        return outcome("unreachable", `could not take the host lock on ${host}: ${describeError(error)}`);
      // A kept connection can have died since (sshd restarted): one new connection, its key checked again.
      if (!lease.reused || !lost(error)) throw error;
      lease.release(false);
      try {
        lease = await connections.lease(job.target, { fresh: true });
      } catch (reconnect) {
        return outcome("unreachable", describeError(reconnect));
      }
      shell = (await hostShell(lease.session, user)).shell;
      first = await shell.run(lockScript(owner, inspected(forward)), [], onMark);
    }
    if (first.code !== 0) {
      locked = false;
      if (first.code === LOCK_CONFLICT_EXIT)
        return outcome(
          "unreachable",
          `locked: another deployment is running on ${host} (${first.lines.join(" ").trim() || "holder unknown"}); it is freed when that deployment's SSH session ends`,
        );
      const why = lastLine(first.stderr) || `exit ${String(first.code)}`;
      if (phase === "lock") return outcome("unreachable", `could not take the host lock on ${host}: ${why}`);
      return outcome("failed", `could not inspect ${host}: ${why} (nothing switched)`);
    }

    let state = readInspection(first, forward);
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
      state = readInspection(await run(shell, inspectScript(inspected(forward)), "inspect the host"), forward);
    }

    const { stage, payload } = await staging(job, forward, state.apps);
    for (const { app, release } of stage) {
      const changed = state.apps.get(app)?.releaseChanged;
      if (changed)
        rebuilt.push(
          `rebuilt ${app}'s release ${short(release)} from git: the dir on the host had changed since it went live (${changed.slice(0, 3).join(", ")}${changed.length > 3 ? ` and ${changed.length - 3} more` : ""})`,
        );
    }
    const bytes = payload.reduce((sum, chunk) => sum + chunk.length, 0);
    const reversePlan = job.heal ? undefined : planHost(host, job.deployed, job.desired);
    const gone = (reversePlan?.apps ?? []).filter((app) => app.release !== null && state.apps.get(app.app)?.baseExists !== true);
    const reverse = reversePlan && gone.length === 0 ? hostChanges(reversePlan, job.deployed, job.desired, "rollback") : undefined;
    const back = job.plan.from === null ? "the host is empty again" : `rolled back to ${job.previousLabel ?? short(job.plan.from)}`;
    // A heal puts back files; what a hook did (a migration) was never undone, so none runs again.
    const hooks = hostHooks(job.heal ? { ...job.plan, apps: [] } : job.plan, job.desired, job.deployed, job.returning);
    const before = hookRuns(job, [...hooks["pre-rollback"], ...hooks["pre-activate"]], "forward");
    const after = hookRuns(job, [...hooks["post-activate"], ...hooks["post-rollback"]], "forward");
    const down = rollbackHooks(job.plan, job.desired);
    const downBefore = hookRuns(job, down["pre-rollback"], "back");
    const downAfter = hookRuns(job, down["post-rollback"], "back");
    const undo: Undo | null = reverse
      ? {
          token: randomBytes(6).toString("hex"),
          reverse: reverse.switch,
          checks: hostChecks(reverse, job.settleMs),
          confirmSeconds: job.confirmSeconds,
          note: `deployment ${job.deploymentId} was not confirmed within ${job.confirmSeconds} s (its operator or its connection was lost); ${back}`,
          hooks: { before: downBefore.map(({ run }) => run), after: downAfter.map(({ run }) => run) },
        }
      : null;
    const irreversible = new Set(
      [...hooks["pre-activate"], ...hooks["post-activate"]]
        .filter(({ hook }) => hook.irreversible)
        .map(({ app, hook }) => `${app}/${hook.name}`),
    );
    const names = (runs: typeof before): HookName[] => runs.map(({ name }) => name);
    const forwardHooks = { before: names(before), after: names(after) };
    const backHooks = { before: names(downBefore), after: names(downAfter) };
    // Each hook may take its whole time limit, and 5 s more to be killed.
    const hookMs = [...before, ...after, ...downBefore, ...downAfter].reduce((sum, { run }) => sum + (run.timeoutSeconds + 5) * 1000, 0);
    let reply: ShellReply;
    try {
      reply = await shell.run(
        activateScript({
          deploymentId: job.deploymentId,
          tree: job.plan.to,
          stage,
          forward: forward.switch,
          checks: hostChecks(forward, job.settleMs),
          undo,
          rollBack: job.rollBack,
          hooks: { before: before.map(({ run }) => run), after: after.map(({ run }) => run) },
        }),
        payload,
        onMark,
        // Five minutes for the steps, the hooks' time, and the upload at 1 MB/s or better: a big release over a slow link is not cut.
        300_000 + hookMs + bytes / 1000,
      );
    } catch (error) {
      if (phase !== "upload" && phase !== "inspect") throw error;
      return outcome("failed", `upload failed, nothing switched: ${describeError(error)}`);
    }
    const report = readActivation(reply.marks, commandNames(forward), commandNames(reverse), forwardHooks, backHooks);
    ranHooks.push(...(report.hooks ?? []));
    if (report.upload) {
      locked = false;
      return outcome("failed", `upload failed, nothing switched: ${describeError(uploadError(host, report.upload))}`, report.upload.log);
    }
    uploadedBytes = bytes;
    if (report.before) {
      locked = false;
      return outcome("failed", `${report.before.detail}; nothing switched`, report.before.log);
    }
    if (report.arm) {
      locked = false;
      return outcome("failed", `${report.arm.detail}; nothing switched`, report.arm.log);
    }
    // The script reports every failure it meets and ends 0; anything else stopped it half-way, and the undo's timer is the way back.
    if (reply.code !== 0) throw new Error(`the activation on ${host} stopped: ${lastLine(reply.stderr) || `exit ${String(reply.code)}`}`);

    let failure = report.forward;
    let backFailure = report.back?.failure;
    if (!failure) {
      failure = await httpChecks(lease.session, forward);
      if (failure && job.rollBack && undo) {
        const rolled = await run(shell, rollbackScript(undo), "switch back", onMark);
        const rolledBack = readActivation(rolled.marks, [], commandNames(reverse), undefined, backHooks);
        ranHooks.push(...(rolledBack.hooks ?? []));
        backFailure = rolledBack.back?.failure;
      } else if (failure) await run(shell, releaseScript(undo?.token ?? null), "release the host");
    }
    if (failure) {
      locked = false;
      if (job.heal) return outcome("failed", `${failure.detail}; left as it is (a heal has nothing to go back to)`, failure.log);
      if (!job.rollBack) return outcome("failed", `${failure.detail}; left as it is (rollout.onFailure: halt)`, failure.log);
      if (!reversePlan) return outcome("rollback-failed", `${failure.detail}; nothing to roll back to`, failure.log);
      if (!reverse)
        return outcome(
          "rollback-failed",
          `${failure.detail}; rollback impossible: the previous release of ${gone.map((app) => app.app).join(", ")} is gone from the host`,
          failure.log,
        );
      backFailure ??= await httpChecks(lease.session, reverse);
      if (backFailure)
        return outcome(
          "rollback-failed",
          `${failure.detail}; the rollback failed too: ${backFailure.detail}`,
          [failure.log, backFailure.log].filter(Boolean).join("\n---\n"),
        );
      // Files go back; what an irreversible hook did does not, and the outcome says so.
      const kept = (report.hooks ?? []).filter((ran) => irreversible.has(`${ran.app}/${ran.name}`)).map((ran) => ran.name);
      return outcome(
        "rolled-back",
        `${kept.length > 0 ? `${IRREVERSIBLE}${kept.join(", ")}) ` : ""}${failure.detail}; ${back}`,
        failure.log,
      );
    }

    enter("commit");
    await run(
      shell,
      confirmScript(
        job.deploymentId,
        job.plan.to,
        job.plan.apps.map((app) => app.app),
        job.keepReleases,
        undo?.token ?? null,
        job.plan.apps.flatMap(({ app, release }) => (release === null ? [] : [{ app, release }])),
      ),
      "record the host's current deployment",
    );
    locked = false;
    const warnings = report.warnings ?? [];
    const warned = warnings.map((warning) => `${warning.detail} (onFailure: warn)`);
    // A return past a hook with no down (a revert, tidemark rollback --force) says so, as a rollback does.
    const passed = job.returning
      ? job.plan.apps.flatMap((app) =>
          app.change === "added"
            ? []
            : (job.deployed?.apps?.get(app.app)?.manifest?.hooks ?? []).filter((hook) => hook.irreversible).map((hook) => hook.name),
        )
      : [];
    const said = [...(passed.length > 0 ? [`${IRREVERSIBLE}${passed.join(", ")}) went back past it: what it did stays`] : []), ...warned];
    return outcome(
      "deployed",
      said.length > 0 ? said.join("; ") : undefined,
      warnings
        .map((warning) => warning.log)
        .filter(Boolean)
        .join("\n---\n") || undefined,
    );
  } catch (error) {
    const when =
      phase === "switch" || phase === "restart" || phase === "check" || phase === "rollback" || phase === "commit"
        ? `after the switch began; unless a deployment confirms it, ${host} switches back by itself within ${job.confirmSeconds} s. Run the deployment again: it converges`
        : "nothing switched";
    return outcome("failed", `${describeError(error)} (${when})`);
  } finally {
    if (locked) shell?.close();
    lease.release(lease.session.alive);
  }
}

interface AppState {
  current: string | null;
  releaseExists: boolean;
  baseExists: boolean;
  /** What differs from its snapshot in the release dir a return would reuse ("no snapshot" when it has none): it is built again from git. */
  releaseChanged?: string[];
  /** The base was checked against its snapshot and is as it went live: safe to hard-link from. */
  baseTrusted: boolean;
}

const inspected = (changes: HostChanges) =>
  changes.plan.apps.map((app) => ({ app: app.app, release: app.release, base: app.previousRelease }));

/**
 * Reads the inspection: the host's `current` line, then one line per app;
 * and the marks of the release dirs checked against their snapshots
 * (snapshots.ts, verifyLines), by `<app>@release` or `<app>@base`.
 */
function readInspection(reply: ShellReply, changes: HostChanges): { tree: string | null; apps: Map<string, AppState> } {
  const [currentLine = "-", ...appLines] = reply.lines;
  const tree = currentLine.trim().split(" ")[1];
  const found = new Map<string, string[]>();
  for (const { kind, text } of reply.marks) {
    if (kind !== "drift" && kind !== "unknown") continue;
    const [what, where = ""] =
      kind === "unknown" ? ["no snapshot", text] : [text.slice(0, text.indexOf(" ")), text.slice(text.indexOf(" ") + 1)];
    const label = where.split("/")[0]!;
    const path = where.slice(label.length + 1);
    found.set(label, [...(found.get(label) ?? []), path ? `${label.split("@")[0]!}/${path} ${what}` : what]);
  }
  const state = new Map<string, AppState>();
  changes.plan.apps.forEach((app, i) => {
    const [current = "-", release = "0", base = "0"] = (appLines[i] ?? "").split(" ");
    const releaseChanged = release === "1" ? found.get(`${app.app}@release`) : undefined;
    state.set(app.app, {
      current: current === "-" ? null : current,
      releaseExists: release === "1",
      baseExists: base === "1",
      ...(releaseChanged ? { releaseChanged } : {}),
      baseTrusted: release !== "1" && base === "1" && !found.has(`${app.app}@base`),
    });
  });
  return { tree: tree === undefined || tree === "-" ? null : tree, apps: state };
}

/**
 * The release dirs to build for the apps whose release is not on the host
 * yet: from the base release (hard links) plus the changed files, or whole
 * when the base is gone; and the files' bytes, in the order the script reads
 * them. A secret is decrypted here, for this host only, and always sent: a
 * hard link would share its inode, and its mode, with an older release.
 */
async function staging(
  job: HostJob,
  changes: HostChanges,
  state: Map<string, AppState>,
): Promise<{ stage: StageApp[]; payload: Uint8Array[] }> {
  const stage: StageApp[] = [];
  const payload: Uint8Array[] = [];
  const key = randomBytes(SECRET_KEY_CHARS / 2).toString("hex");
  for (const app of changes.plan.apps) {
    const on = state.get(app.app);
    if (app.release === null || (on?.releaseExists && !on.releaseChanged)) continue;
    const tree = changes.incoming.get(app.app) as AppTree;
    // Only a base that is as it went live is hard-linked: an edit made on the host would come along unseen.
    const base = app.previousRelease !== null && on?.baseTrusted ? app.previousRelease : null;
    const files = base === null ? await job.wholeApp(job.plan.host, job.desired!.oid, app.app) : tree.files!;
    const secrets = new Map<string, SecretKind>();
    for (const [path, file] of files) {
      const kind = file.age || mayBeSops(path) ? await secretKind(path, file, job.blob) : undefined;
      if (kind) secrets.set(path, kind);
    }
    const changed = app.files.filter((file) => file.change !== "removed").map((file) => file.path);
    const send = base === null ? [...files.keys()] : [...new Set([...changed, ...secrets.keys()])];
    const staged = await Promise.all(
      send.map(async (path): Promise<{ bytes: Uint8Array; file: StageFile }> => {
        const entry = files.get(path)!;
        const bytes = await job.blob(entry.oid);
        const kind = secrets.get(path);
        const file = { path, executable: entry.mode === "100755" };
        if (!kind) return { bytes, file: { ...file, size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") } };
        const plain = await openFor(job, app.app, path, kind, bytes);
        const sha256 = createHash("sha256").update(key).update(plain).digest("hex");
        return { bytes: plain, file: { ...file, size: plain.length, sha256, secret: tree.manifest?.secrets[path] ?? DEFAULT_SECRET } };
      }),
    );
    payload.push(...staged.map(({ bytes }) => bytes));
    stage.push({
      app: app.app,
      release: app.release,
      base,
      replace: on?.releaseExists === true,
      drop:
        base === null
          ? []
          : [...new Set([...app.files.filter((file) => file.change !== "added").map((file) => file.path), ...secrets.keys()])],
      files: staged.map(({ file }) => file),
    });
  }
  if (stage.some((app) => app.files.some((file) => file.secret))) payload.unshift(Buffer.from(key));
  return { stage, payload };
}

const DEFAULT_SECRET = { mode: "0600" };

/**
 * The hooks a host runs, as its script takes them, with their names for the
 * report. `on: once` hooks only on the rollout's first host. TIDEMARK_FROM
 * and TIDEMARK_TO are "<release> <source commit>" of what the host leaves
 * and what it goes to ("-" for nothing).
 */
function hookRuns(job: HostJob, hooks: HostHook[], direction: "forward" | "back"): Array<{ run: HookRun; name: HookName }> {
  return hooks
    .filter(({ hook }) => hook.on === "each" || job.once)
    .map(({ app, release, hook }) => {
      const planned = job.plan.apps.find((candidate) => candidate.app === app);
      const ahead = `${planned?.release ?? "-"} ${job.sourceCommit}`;
      const behind = `${planned?.previousRelease ?? "-"} ${job.previousCommit ?? "-"}`;
      return {
        run: {
          phase: hook.phase,
          dir: `${appDir(app)}/${release}`,
          run: hook.run,
          timeoutSeconds: hook.timeoutSeconds,
          ...(hook.user ? { user: hook.user } : {}),
          warn: hook.onFailure === "warn",
          env: {
            TIDEMARK_APP: app,
            TIDEMARK_HOOK: hook.name,
            TIDEMARK_PHASE: hook.phase,
            TIDEMARK_HOST: job.plan.host,
            TIDEMARK_DEPLOYMENT: job.deploymentId,
            TIDEMARK_FROM: direction === "forward" ? behind : ahead,
            TIDEMARK_TO: direction === "forward" ? ahead : behind,
          },
        },
        name: { app, name: hook.name, ...(hook.onFailure === "warn" ? { warn: true } : {}) },
      };
    });
}

/** A secret file's plaintext, for this host's upload; one that does not open stops the host before anything is sent. */
async function openFor(job: HostJob, app: string, path: string, kind: SecretKind, bytes: Uint8Array): Promise<Buffer> {
  const opened = job.open ? await job.open(kind, bytes) : { why: "this deployment was planned without opening secrets" };
  if ("why" in opened)
    throw new TidemarkError(
      "SECRET_UNREADABLE",
      `cannot decrypt ${app}/${path}: ${opened.why}`,
      "give the operator an age identity the file is encrypted to (TIDEMARK_AGE_KEY_FILE), or re-encrypt it; then deploy again",
    );
  return opened.plain;
}

/** The checks the host runs itself: units, then command checks; HTTP checks go through the connection. */
function hostChecks(changes: HostChanges, settleMs: number): HostChecks {
  return {
    units: changes.units,
    commands: changes.checks.flatMap(({ app, check }) =>
      "command" in check ? [{ app, command: check.command, timeoutSeconds: check.timeoutSeconds }] : [],
    ),
    settleMs: changes.units.length > 0 || changes.checks.length > 0 ? settleMs : 0,
  };
}

const commandNames = (changes: HostChanges | undefined): CheckNames =>
  (changes?.checks ?? []).flatMap(({ app, check }) => ("command" in check ? [{ app, name: check.name ?? check.command }] : []));

/** The HTTP checks, in order, from the host's side of the connection; the first that fails. */
async function httpChecks(session: SshSession, changes: HostChanges): Promise<Failure | undefined> {
  for (const { app, check } of changes.checks) {
    if ("command" in check) continue;
    const name = check.name ?? splitCredentials(check.http).url;
    const problem = await httpCheck(session, check.http, check.status, check.timeoutSeconds * 1000);
    if (problem) return { detail: `check ${JSON.stringify(name)} of ${app} failed: ${problem}` };
  }
  return undefined;
}

/** Below this much free space, a failed upload is put down to a full disk. */
const DISK_FULL_BYTES = 1024 * 1024;

/** Names a failed upload's cause: a host whose disk is full makes sh say only "I/O error" or "No space left". */
function uploadError(host: string, upload: NonNullable<ActivationReport["upload"]>): Error {
  const error = new Error(`could not prepare the release dirs on ${host}: ${upload.reason}`);
  const space = upload.space;
  if (!space || space.availableBytes >= DISK_FULL_BYTES) return error;
  const kib = (bytes: number) => `${Math.floor(bytes / 1024)} KiB`;
  return new TidemarkError(
    "HOST_DISK_FULL",
    `${host}'s disk is full (${kib(space.availableBytes)} free of ${kib(space.totalBytes)} in ${HOST_ROOT}): ${upload.reason}`,
    `free space on ${host} (df -h ${HOST_ROOT}), then deploy again (the next push, or tidemark deploy)`,
    { cause: error },
  );
}

const lost = (error: unknown) => error instanceof TidemarkError && (error.code === "SSH_CONNECTION_LOST" || error.code === "SSH_CHANNEL");

async function run(shell: RemoteShell, script: string, what: string, onMark?: (mark: Mark) => void): Promise<ShellReply> {
  const reply = await shell.run(script, [], onMark);
  if (reply.code !== 0) throw new Error(`could not ${what}: ${lastLine(reply.stderr) || `exit ${String(reply.code)}`}`);
  return reply;
}

const lastLine = (text: string) => text.trim().split("\n").at(-1) ?? "";
const short = (tree: string | null) => (tree === null ? "nothing" : tree.slice(0, 7));
