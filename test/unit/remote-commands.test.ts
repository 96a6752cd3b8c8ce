import { describe, expect, it } from "vitest";
import {
  commitScript,
  inspectLines,
  lockCommand,
  parseDiskSpace,
  parseUnitStates,
  PRELUDE,
  restartLines,
  stageLines,
  switchLines,
  unitFailed,
  type SwitchSpec,
} from "../../src/remote/commands.js";
import { readActivation } from "../../src/remote/host-report.js";
import type { Mark } from "../../src/remote/remote-shell.js";
import { activateScript, confirmScript, lockScript, shellCommand, type Activation } from "../../src/remote/session-scripts.js";

const ODD = "-x $(touch pwned) 'q'";
const QUOTED_ODD = `'-x $(touch pwned) '\\''q'\\'''`;
const body = (input: string) => {
  expect(input.startsWith(`${PRELUDE}\n`)).toBe(true);
  return input.slice(PRELUDE.length + 1);
};
/** A session script's own lines: after the prelude and the two mark helpers, before the closing brace. */
const own = (script: string) => {
  const lines = script.split("\n");
  expect(lines[0]).toBe("tm_script() {");
  expect(lines.slice(-2)).toEqual(["}", ""]);
  return lines.slice(PRELUDE.split("\n").length + 3, -2);
};

const spec: SwitchSpec = {
  stop: ["old.service"],
  apps: [
    { app: "web", release: "r2" },
    { app: ODD, release: null },
  ],
  purge: [],
  links: {
    remove: ["/etc/systemd/system/old.service"],
    add: [{ path: "/etc/systemd/system/web.service", target: "/var/lib/tidemark/apps/web/current/systemd/web.service" }],
  },
  enable: ["web.service"],
  restart: ["web.service"],
  reload: true,
};

describe("remote command builders", () => {
  it("runs one shell per host session, as root directly or through sudo without a password prompt", () => {
    const root = shellCommand("root", "m1");
    expect(
      root.startsWith(
        "/bin/sh -c 'TM=$1; export TM\n{ [ -d /var/lib/tidemark ] || mkdir -p /var/lib/tidemark; } && exec 9>>/var/lib/tidemark/lock || exit 70\n",
      ),
    ).toBe(true);
    expect(root.endsWith("' tidemark m1")).toBe(true);
    expect(shellCommand({ sudo: "deploy" }, "m1")).toBe(`sudo -n ${root}`);
    // A script is one function, run only once its definition parsed: a script cut short by a lost connection never starts.
    expect(root).toContain(`(eval "$s"; tm_script)`);
  });

  it("holds the host lock in a process tied to the session, and reports the holder on conflict", () => {
    expect(lockCommand("root", "deployment 1 from laptop")).toBe(
      "mkdir -p /var/lib/tidemark; flock -n -o -E 75 /var/lib/tidemark/lock sh -c 'printf '\\''%s\\n'\\'' \"$1\" > /var/lib/tidemark/lock.owner && echo locked && exec cat > /dev/null' sh 'deployment 1 from laptop'; rc=$?; if [ $rc -eq 75 ]; then cat /var/lib/tidemark/lock.owner 2>/dev/null; fi; exit $rc",
    );
    expect(lockCommand({ sudo: "deploy" }, "x").startsWith("sudo -n sh -c 'mkdir -p /var/lib/tidemark; flock")).toBe(true);
    expect(own(lockScript("deployment 1 from $(host)", [])).slice(0, 5)).toEqual([
      "if ! flock -n 9; then cat /var/lib/tidemark/lock.owner 2>/dev/null || true; exit 75; fi",
      "printf '%s\\n' 'deployment 1 from $(host)' > /var/lib/tidemark/lock.owner",
      // An undo left unconfirmed by an operator that is gone runs before anything else; its note is passed on.
      'for f in /var/lib/tidemark/undo/*.sh; do if [ -f "$f" ]; then sh "$f" lost > /dev/null; fi; done',
      "if [ -f /var/lib/tidemark/rolled-back ]; then tm_log undone /var/lib/tidemark/rolled-back; rm -f -- /var/lib/tidemark/rolled-back; fi",
      "tm_mark phase inspect",
    ]);
  });

  it("inspects the host's current deployment and each app's links, quoting app names", () => {
    expect(inspectLines([{ app: ODD, release: "abc", base: null }])).toEqual([
      `if IFS= read -r l < /var/lib/tidemark/current; then printf '%s\\n' "$l"; else echo -; fi 2>/dev/null`,
      "if [ -d '/var/lib/tidemark/apps/-x $(touch pwned) '\\''q'\\''/abc' ]; then r=1; else r=0; fi",
      "b=0",
      `printf '%s %s %s\\n' "$(readlink -- '/var/lib/tidemark/apps/-x $(touch pwned) '\\''q'\\''/current' || echo -)" "$r" "$b"`,
    ]);
  });

  it("stages a release from hard links to its base, the changed files' bytes read from the stream, hashes checked, sealed", () => {
    const sha = "ab".repeat(32);
    expect(
      stageLines("d1", "t1", [
        {
          app: "web",
          release: "r2",
          base: "r1",
          drop: ["a b.txt"],
          files: [
            { path: "conf/$(x).txt", size: 12, executable: false, sha256: sha },
            { path: "run", size: 0, executable: true, sha256: sha },
          ],
        },
      ]),
    ).toEqual([
      "printf '%s\\n' 'd1 t1' > /var/lib/tidemark/target.tidemark-new; mv -T -- /var/lib/tidemark/target.tidemark-new /var/lib/tidemark/target",
      "if tm_there /var/lib/tidemark/apps/web/.partial-r2; then rm -rf -- /var/lib/tidemark/apps/web/.partial-r2; fi",
      "mkdir -p -- /var/lib/tidemark/apps/web/.partial-r2",
      "cp -a --link -- /var/lib/tidemark/apps/web/r1/. /var/lib/tidemark/apps/web/.partial-r2/",
      "rm -rf -- '/var/lib/tidemark/apps/web/.partial-r2/a b.txt'",
      "if ! { [ -d /var/lib/tidemark/apps/web/.partial-r2/conf ]; }; then mkdir -p -- /var/lib/tidemark/apps/web/.partial-r2/conf; fi",
      "head -c 12 > '/var/lib/tidemark/apps/web/.partial-r2/conf/$(x).txt'",
      "head -c 0 > /var/lib/tidemark/apps/web/.partial-r2/run",
      "sha256sum --check --quiet --strict <<'TIDEMARK_SUMS'",
      `${sha}  /var/lib/tidemark/apps/web/.partial-r2/conf/$(x).txt`,
      `${sha}  /var/lib/tidemark/apps/web/.partial-r2/run`,
      "TIDEMARK_SUMS",
      "chmod a+x -- /var/lib/tidemark/apps/web/.partial-r2/run",
      "chmod -R a-w -- /var/lib/tidemark/apps/web/.partial-r2",
      "mv -T -- /var/lib/tidemark/apps/web/.partial-r2 /var/lib/tidemark/apps/web/r2",
    ]);
  });

  it("stages a secret unreadable by others from its first byte, checks it by a keyed digest read from the stream, then gives it its mode and group", () => {
    const keyed = "cd".repeat(32);
    const lines = stageLines("d1", "t1", [
      {
        app: "web",
        release: "r2",
        base: null,
        drop: [],
        files: [
          { path: "db.env", size: 20, executable: false, sha256: keyed, secret: { mode: "0600" } },
          { path: "api key", size: 9, executable: false, sha256: keyed, secret: { mode: "0640", group: "app" } },
        ],
      },
    ]);
    // The key comes before every file's bytes, and only ever from the stream.
    expect(lines[1]).toBe("tm_k=$(head -c 64)");
    expect(lines).toContain("(umask 077; head -c 20 > /var/lib/tidemark/apps/web/.partial-r2/db.env)");
    expect(lines).toContain(
      `[ "$({ printf %s "$tm_k"; cat -- /var/lib/tidemark/apps/web/.partial-r2/db.env; } | sha256sum)" = '${keyed}  -' ] || { echo 'tidemark: web/db.env did not arrive as sent (its keyed digest differs)' >&2; exit 1; }`,
    );
    expect(lines.some((line) => line.startsWith("sha256sum --check"))).toBe(false);
    expect(lines.slice(-4)).toEqual([
      "chmod 0600 -- /var/lib/tidemark/apps/web/.partial-r2/db.env",
      "chgrp -- app '/var/lib/tidemark/apps/web/.partial-r2/api key'",
      "chmod 0640 -- '/var/lib/tidemark/apps/web/.partial-r2/api key'",
      "mv -T -- /var/lib/tidemark/apps/web/.partial-r2 /var/lib/tidemark/apps/web/r2",
    ]);
  });

  it("switches: stop what goes, switch or retire apps, reconcile links; then reload, enable, restart", () => {
    expect(switchLines(spec)).toEqual([
      "systemctl disable --now -- old.service || true",
      "tm_switch /var/lib/tidemark/apps/web r2",
      `tm_retire ${QUOTED_ODD.replace("'-x", "'/var/lib/tidemark/apps/-x")}`,
      "tm_unlink /etc/systemd/system/old.service",
      "tm_place /var/lib/tidemark/apps/web/current/systemd/web.service /etc/systemd/system/web.service",
    ]);
    expect(restartLines(spec)).toEqual([
      "systemctl daemon-reload",
      "systemctl enable --quiet -- web.service",
      "systemctl reset-failed -- web.service 2>/dev/null || true",
      "systemctl restart -- web.service || true",
    ]);
    // No unit file changed: no reload (0.3-0.5 s each); nothing for systemd at all: no line, so hosts without systemd work.
    expect(restartLines({ ...spec, reload: false })).not.toContain("systemctl daemon-reload");
    expect(restartLines({ ...spec, reload: false, enable: [], restart: [] })).toEqual([]);
  });

  const activation: Activation = {
    deploymentId: "d1",
    tree: "t1",
    stage: [],
    forward: spec,
    checks: { units: ["web.service"], commands: [{ app: "web", command: "grep -q ok status", timeoutSeconds: 30 }], settleMs: 300 },
    undo: {
      token: "abc123",
      reverse: { ...spec, stop: [], apps: [{ app: "web", release: "r1" }], links: { remove: [], add: [] } },
      checks: { units: ["web.service"], commands: [], settleMs: 300 },
      confirmSeconds: 60,
      note: "deployment d1 was not confirmed within 60 s; rolled back to 1a2b3c4",
      hooks: { before: [], after: [] },
    },
    rollBack: true,
    hooks: { before: [], after: [] },
  };

  it("activates in one script: upload, arm the undo, switch, restart, settle, check; on failure switch back and check again", () => {
    const lines = activateScript(activation).split("\n");
    expect(lines.slice(lines.indexOf("tm_forward() {"))).toEqual([
      "tm_forward() {",
      "tm_mark phase switch",
      "tm_step switch tm_switch_forward; [ $? -eq 0 ] || return 1",
      "tm_mark phase restart",
      "tm_step reload tm_restart_forward; [ $? -eq 0 ] || return 1",
      "tm_mark phase check",
      "sleep 0.300",
      "tm_units web.service; [ $? -eq 0 ] || return 1",
      "tm_command 0 /var/lib/tidemark/apps/web/current 30 'grep -q ok status'; [ $? -eq 0 ] || return 1",
      "return 0",
      "}",
      "set +e",
      "tm_mark phase upload",
      "tm_step upload tm_stage",
      `if [ $? -ne 0 ]; then tm_mark space "$(stat -f -c '%a %S %b' -- /var/lib/tidemark)"; flock -u 9; exit 1; fi`,
      "tm_step arm tm_arm_undo",
      "if [ $? -ne 0 ]; then flock -u 9; exit 1; fi",
      "tm_forward",
      "if [ $? -eq 0 ]; then tm_mark result ok; exit 0; fi",
      "tm_mark phase rollback",
      "tm_step rollback sh /var/lib/tidemark/undo/abc123.sh now",
      "if [ $? -eq 0 ]; then",
      "tm_back() {",
      "tm_mark phase check",
      "sleep 0.300",
      "tm_units web.service; [ $? -eq 0 ] || return 1",
      "return 0",
      "}",
      "tm_back",
      "if [ $? -eq 0 ]; then tm_mark rollback ok; else tm_mark rollback failed; fi",
      "else tm_mark rollback failed; fi",
      "flock -u 9",
      "tm_mark result failed",
      "}",
      "",
    ]);
    // With onFailure: halt, a failure leaves the host as it is: the undo is disarmed, not run.
    expect(
      activateScript({ ...activation, rollBack: false })
        .split("\n")
        .slice(-6),
    ).toEqual(["if [ $? -eq 0 ]; then tm_mark result ok; exit 0; fi", "tm_disarm abc123", "flock -u 9", "tm_mark result failed", "}", ""]);
  });

  it("arms the undo in a file of its own and a transient systemd timer that takes the host lock before it switches back", () => {
    const script = activateScript(activation);
    const [start, end] = [script.indexOf("printf '%s\\n' '"), script.indexOf("' > /var/lib/tidemark/undo/abc123.sh.new\n")];
    expect(start).toBeGreaterThan(0);
    // The undo's text, written by the shell's own printf from one quoted word.
    const undo = script
      .slice(start + "printf '%s\\n' '".length, end)
      .replaceAll("'\\''", "'")
      .split("\n");
    expect(undo.slice(undo.indexOf("tm_phase switch"))).toEqual([
      "tm_phase switch",
      "tm_switch /var/lib/tidemark/apps/web r1",
      "tm_phase restart",
      "systemctl daemon-reload",
      "systemctl enable --quiet -- web.service",
      "systemctl reset-failed -- web.service 2>/dev/null || true",
      "systemctl restart -- web.service || true",
      `case "$1" in timer) by="by its own timer";; lost) by="as the next deployment took the host lock";; *) by="";; esac`,
      `if [ -n "$by" ]; then printf '%s, %s, %s\\n' 'deployment d1 was not confirmed within 60 s; rolled back to 1a2b3c4' "$by" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> /var/lib/tidemark/rolled-back; fi`,
      "tm_disarm abc123",
    ]);
    expect(script).toContain(
      `systemd-run --quiet --collect --unit=tidemark-undo-abc123 --on-active=60 --timer-property=AccuracySec=100ms -- flock /var/lib/tidemark/lock sh -c '[ ! -f "$1" ] || exec sh "$1" timer' sh /var/lib/tidemark/undo/abc123.sh`,
    );
    // Without systemd, a sleeper that holds neither the lock's fd nor the session's output, and whose sleep ends with it.
    expect(script).toContain(
      `sh -c 'trap '\\'''\\'' HUP; trap '\\''kill "$s"; exit 0'\\'' TERM; sleep "$1" & s=$!; wait "$s" && exec flock /var/lib/tidemark/lock sh -c '\\''[ ! -f "$1" ] || exec sh "$1" timer'\\'' sh "$2"' sh 60 /var/lib/tidemark/undo/abc123.sh < /dev/null > /dev/null 2>&1 9>&- &\necho $! > /var/lib/tidemark/undo/abc123.pid`,
    );
  });

  it("confirms: records current, collects old releases without ever failing, disarms the undo, releases the lock", () => {
    const lines = body(commitScript("root", "d2", null, ["web"], 3).input).split("\n");
    expect(lines[0]).toBe(
      "printf '%s\\n' 'd2 -' > /var/lib/tidemark/current.tidemark-new; mv -T -- /var/lib/tidemark/current.tidemark-new /var/lib/tidemark/current",
    );
    expect(lines[1]).toContain("|| true; }");
    expect(lines[2]).toBe("tm_collect /var/lib/tidemark/apps/web");
    expect(own(confirmScript("d2", null, ["web"], 3, "abc123")).slice(-5)).toEqual([
      lines[0],
      lines[1],
      "tm_collect /var/lib/tidemark/apps/web",
      "tm_disarm abc123",
      "flock -u 9",
    ]);
  });

  it("reads the free space of the disk that holds the releases, to tell a full disk from other failures", () => {
    expect(parseDiskSpace("0 4096 4096\n")).toEqual({ availableBytes: 0, totalBytes: 16 * 1024 * 1024 });
    expect(parseDiskSpace("stat: cannot read file system information\n")).toBeUndefined();
  });

  it("reads unit states and tells a failed unit from a healthy one", () => {
    const states = parseUnitStates(
      "Id=a.service\nActiveState=active\nSubState=running\nResult=success\n\nId=b.service\nActiveState=failed\nSubState=failed\nResult=exit-code\n\nId=c.service\nActiveState=activating\nSubState=auto-restart\nResult=exit-code\n",
    );
    expect(states.map((state) => [state.unit, unitFailed(state)])).toEqual([
      ["a.service", false],
      ["b.service", true],
      ["c.service", true],
    ]);
  });
});

describe("what an activation reports", () => {
  const marks = (text: string): Mark[] =>
    text
      .trim()
      .split("\n")
      .map((line) => ({ kind: line.split(" ")[0]!, text: line.split(" ").slice(1).join(" ") }));
  const names = [{ app: "web", name: "status page" }];

  it("names a failed unit with its journal, and the rollback's outcome", () => {
    const report = readActivation(
      marks(
        [
          "phase switch",
          "phase restart",
          "phase check",
          "unit Id=web.service",
          "unit ActiveState=failed",
          "unit SubState=failed",
          "unit Result=exit-code",
          "unit ",
          "journal-of web.service",
          "journal web: cannot parse /etc/web.conf",
          "journal ",
          "phase rollback",
          "phase switch",
          "phase restart",
          "phase check",
          "unit Id=web.service",
          "unit ActiveState=active",
          "unit SubState=running",
          "unit Result=success",
          "rollback ok",
          "result failed",
        ].join("\n"),
      ),
      names,
      [],
    );
    expect(report).toEqual({
      forward: { detail: "web.service failed (exit-code)", log: "web.service:\nweb: cannot parse /etc/web.conf" },
      back: { failure: undefined },
    });
  });

  it("names a failed command check by its name, a failed switch by its last error, and a failed upload with the free space", () => {
    expect(readActivation(marks("phase check\ncheck 0 3\nlog not ok\nlog \nresult failed"), names, []).forward).toEqual({
      detail: 'check "status page" of web failed (exit 3)',
      log: "not ok",
    });
    expect(readActivation(marks("phase switch\nfail switch 1\nlog mv: cannot move\nlog \nresult failed"), [], []).forward).toEqual({
      detail: "the switch failed: mv: cannot move",
      log: "mv: cannot move",
    });
    expect(
      readActivation(marks("phase upload\nfail upload 1\nlog head: write error: No space left on device\nspace 10 4096 100"), [], []),
    ).toEqual({
      upload: {
        reason: "head: write error: No space left on device",
        log: "head: write error: No space left on device",
        space: { availableBytes: 40960, totalBytes: 409600 },
      },
    });
    expect(readActivation(marks("phase switch\nphase restart\nphase check\nresult ok"), names, [])).toEqual({ forward: undefined });
  });
});
