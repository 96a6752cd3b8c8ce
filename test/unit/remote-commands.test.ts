import { describe, expect, it } from "vitest";
import {
  checkScript,
  commitScript,
  diskSpaceScript,
  inspectScript,
  journalScript,
  lockCommand,
  parseDiskSpace,
  parseUnitStates,
  PRELUDE,
  restartScript,
  sealScript,
  stageScript,
  switchScript,
  unitFailed,
  unitStateScript,
} from "../../src/remote/commands.js";

const ODD = "-x $(touch pwned) 'q'";
const body = (input: string) => {
  expect(input.startsWith(`${PRELUDE}\n`)).toBe(true);
  return input.slice(PRELUDE.length + 1);
};

describe("remote command builders", () => {
  it("runs scripts through sh on stdin, as root directly or through sudo without a password prompt", () => {
    expect(inspectScript("root", []).line).toBe("sh -s");
    expect(inspectScript({ sudo: "deploy" }, []).line).toBe("sudo -n sh -s");
  });

  it("holds the host lock in a process tied to the session, and reports the holder on conflict", () => {
    expect(lockCommand("root", "deployment 1 from laptop")).toBe(
      "mkdir -p /var/lib/tidemark; flock -n -o -E 75 /var/lib/tidemark/lock sh -c 'printf '\\''%s\\n'\\'' \"$1\" > /var/lib/tidemark/lock.owner && echo locked && exec cat > /dev/null' sh 'deployment 1 from laptop'; rc=$?; if [ $rc -eq 75 ]; then cat /var/lib/tidemark/lock.owner 2>/dev/null; fi; exit $rc",
    );
    expect(lockCommand({ sudo: "deploy" }, "x").startsWith("sudo -n sh -c 'mkdir -p /var/lib/tidemark; flock")).toBe(true);
  });

  it("inspects the host's current deployment and each app's links, quoting app names", () => {
    expect(body(inspectScript("root", [{ app: ODD, release: "abc", base: null }]).input)).toBe(
      [
        "cat /var/lib/tidemark/current 2>/dev/null || echo -",
        `printf '%s %s %s\\n' "$(readlink -- '/var/lib/tidemark/apps/-x $(touch pwned) '\\''q'\\''/current' || echo -)" "$(if [ -d '/var/lib/tidemark/apps/-x $(touch pwned) '\\''q'\\''/abc' ]; then echo 1; else echo 0; fi)" "$(echo 0)"`,
        "",
      ].join("\n"),
    );
  });

  it("stages a release from hard links to its base, dropping what changes", () => {
    expect(
      body(stageScript("root", "d1", "t1", [{ app: "web", release: "r2", base: "r1", drop: ["a b.txt"], dirs: ["conf"] }]).input),
    ).toBe(
      [
        "printf '%s\\n' 'd1 t1' > /var/lib/tidemark/target.tidemark-new; mv -T -- /var/lib/tidemark/target.tidemark-new /var/lib/tidemark/target",
        "rm -rf -- /var/lib/tidemark/apps/web/.partial-r2",
        "mkdir -p -- /var/lib/tidemark/apps/web/.partial-r2",
        "cp -a --link -- /var/lib/tidemark/apps/web/r1/. /var/lib/tidemark/apps/web/.partial-r2/",
        "rm -rf -- '/var/lib/tidemark/apps/web/.partial-r2/a b.txt'",
        "mkdir -p -- /var/lib/tidemark/apps/web/.partial-r2/conf",
        "",
      ].join("\n"),
    );
  });

  it("seals a release: hashes checked, read-only, renamed into place", () => {
    expect(body(sealScript("root", [{ app: "web", release: "r2", uploaded: [{ path: "$(x).txt", sha256: "ab".repeat(32) }] }]).input)).toBe(
      [
        "(cd -- /var/lib/tidemark/apps/web/.partial-r2 && sha256sum --check --quiet --strict) <<'TIDEMARK_SUMS'",
        `${"ab".repeat(32)}  $(x).txt`,
        "TIDEMARK_SUMS",
        "chmod -R a-w -- /var/lib/tidemark/apps/web/.partial-r2",
        "mv -T -- /var/lib/tidemark/apps/web/.partial-r2 /var/lib/tidemark/apps/web/r2",
        "",
      ].join("\n"),
    );
  });

  it("switches: stop what goes, switch or retire apps, reconcile links; then reload, enable, restart", () => {
    const spec = {
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
    expect(body(switchScript("root", spec).input)).toBe(
      [
        "systemctl disable --now -- old.service || true",
        "tm_switch /var/lib/tidemark/apps/web r2",
        "tm_retire '/var/lib/tidemark/apps/-x $(touch pwned) '\\''q'\\'''",
        "tm_unlink /etc/systemd/system/old.service",
        "tm_place /var/lib/tidemark/apps/web/current/systemd/web.service /etc/systemd/system/web.service",
        "",
      ].join("\n"),
    );
    expect(body(restartScript("root", spec)!.input)).toBe(
      [
        "systemctl daemon-reload",
        "systemctl enable --quiet -- web.service",
        "systemctl reset-failed -- web.service 2>/dev/null || true",
        "systemctl restart -- web.service || true",
        "",
      ].join("\n"),
    );
    // No unit file changed: no reload (0.3-0.5 s each); nothing for systemd at all: no script, so hosts without systemd work.
    expect(body(restartScript("root", { ...spec, reload: false })!.input)).not.toContain("daemon-reload");
    expect(restartScript("root", { ...spec, reload: false, enable: [], restart: [] })).toBeNull();
  });

  it("checks units after settling, runs command checks from the current release, reads the journal", () => {
    expect(body(unitStateScript("root", ["a.service", "b@1.service"], 1000).input)).toBe(
      "sleep 1.000\nsystemctl show -p Id,ActiveState,SubState,Result -- a.service b@1.service\n",
    );
    expect(body(checkScript("root", "web", "curl -fs localhost:8080 | grep ok", 30).input)).toBe(
      "cd -- /var/lib/tidemark/apps/web/current\nexec timeout -k 5 30 sh -c 'curl -fs localhost:8080 | grep ok'\n",
    );
    expect(body(journalScript("root", "web.service").input)).toBe("journalctl --no-pager -o cat -n 20 -u web.service\n");
  });

  it("records current, then collects old releases without ever failing", () => {
    const lines = body(commitScript("root", "d2", null, ["web"], 3).input).split("\n");
    expect(lines[0]).toBe(
      "printf '%s\\n' 'd2 -' > /var/lib/tidemark/current.tidemark-new; mv -T -- /var/lib/tidemark/current.tidemark-new /var/lib/tidemark/current",
    );
    expect(lines[1]).toContain("|| true; }");
    expect(lines[2]).toBe("tm_collect /var/lib/tidemark/apps/web");
  });

  it("reads the free space of the disk that holds the releases, to tell a full disk from other failures", () => {
    expect(body(diskSpaceScript("root").input)).toBe("stat -f -c '%a %S %b' -- /var/lib/tidemark\n");
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

  it("lets a sudo user's SFTP write only into the dirs it uploads to, and gives the release back to root when sealing", () => {
    const staged = body(
      stageScript({ sudo: "deployer" }, "d1", "t1", [{ app: "web", release: "r2", base: null, drop: [], dirs: ["conf"] }]).input,
    ).split("\n");
    expect(staged.slice(-3)).toEqual([
      "chown -- deployer /var/lib/tidemark/apps/web/.partial-r2 /var/lib/tidemark/apps/web/.partial-r2/conf",
      "chmod u+w -- /var/lib/tidemark/apps/web/.partial-r2 /var/lib/tidemark/apps/web/.partial-r2/conf",
      "",
    ]);
    expect(body(sealScript({ sudo: "deployer" }, [{ app: "web", release: "r2", uploaded: [] }]).input)).toBe(
      "chown -R 0:0 -- /var/lib/tidemark/apps/web/.partial-r2\nchmod -R a-w -- /var/lib/tidemark/apps/web/.partial-r2\nmv -T -- /var/lib/tidemark/apps/web/.partial-r2 /var/lib/tidemark/apps/web/r2\n",
    );
  });
});
