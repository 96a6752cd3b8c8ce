import { describe, expect, it } from "vitest";
import { driftLine, globMatches, readDriftCheck, type CheckMark, type DriftExpectation, type HostDrift } from "../../src/core/drift.js";
import { driftStatus } from "../../src/core/statuses.js";

const expect1: DriftExpectation = {
  apps: [{ app: "web", release: "r1" }],
  links: [
    { path: "/var/lib/tidemark/apps/web/current", target: "r1" },
    { path: "/etc/systemd/system/web.service", target: "/var/lib/tidemark/apps/web/current/systemd/web.service" },
  ],
  units: ["web.service", "tick.service"],
};

const healthy: CheckMark[] = [
  { kind: "link", text: "r1\t/var/lib/tidemark/apps/web/current" },
  { kind: "link", text: "/var/lib/tidemark/apps/web/current/systemd/web.service\t/etc/systemd/system/web.service" },
  ...["Id=web.service", "UnitFileState=enabled", "ActiveState=active", "Type=simple", "RemainAfterExit=no", ""].map((text) => ({
    kind: "unit",
    text,
  })),
  // A oneshot between its runs is inactive by design.
  ...["Id=tick.service", "UnitFileState=enabled", "ActiveState=inactive", "Type=oneshot", "RemainAfterExit=no"].map((text) => ({
    kind: "unit",
    text,
  })),
];

describe("reading a host's drift check", () => {
  it("is clean when every link and unit is as deployed and no file mark came", () => {
    expect(readDriftCheck("web01", expect1, [...healthy, { kind: "end", text: "" }], [])).toEqual({
      host: "web01",
      state: "clean",
      findings: [],
    });
  });

  it("is nothing at all without its end mark: a cut check is never taken for a clean host", () => {
    expect(readDriftCheck("web01", expect1, healthy, [])).toBeUndefined();
  });

  it("names each finding, sorted by path, and drops the ignored ones", () => {
    const marks: CheckMark[] = [
      { kind: "drift", text: "modified web/nginx.conf" },
      { kind: "drift", text: "added web/cache/x" },
      { kind: "drift", text: "mode web/a b.txt" },
      { kind: "gone", text: "api" },
      { kind: "unknown", text: "old" },
      { kind: "link", text: "r0\t/var/lib/tidemark/apps/web/current" },
      ...["Id=web.service", "UnitFileState=disabled", "ActiveState=failed", ""].map((text) => ({ kind: "unit", text })),
      { kind: "end", text: "" },
    ];
    const drift = readDriftCheck("web02", expect1, marks, ["web/cache/**"]);
    expect(drift).toEqual({
      host: "web02",
      state: "drift",
      unknown: ["old"],
      findings: [
        { kind: "link", path: "/etc/systemd/system/web.service" },
        { kind: "link", path: "/var/lib/tidemark/apps/web/current" },
        { kind: "removed", path: "api/" },
        { kind: "unit-disabled", path: "tick.service" },
        { kind: "unit-inactive", path: "tick.service" },
        { kind: "unit-disabled", path: "web.service" },
        { kind: "unit-inactive", path: "web.service" },
        { kind: "mode", path: "web/a b.txt" },
        { kind: "modified", path: "web/nginx.conf" },
      ],
    });
    expect(driftLine(drift!)).toBe(
      "web02: /etc/systemd/system/web.service link, /var/lib/tidemark/apps/web/current link, api/ removed and 6 more",
    );
  });

  it("says busy when a deployment holds the lock, whatever else came", () => {
    expect(readDriftCheck("web01", expect1, [{ kind: "busy", text: "" }], [])).toMatchObject({ state: "busy", findings: [] });
  });
});

describe("ignore globs", () => {
  it.each([
    ["web/cache/**", "web/cache/a/b", true],
    ["web/cache/**", "web/cached", false],
    ["*.log", "web/logs/x.log", true],
    ["*.log", "web/x.log.1", false],
    ["web/*.conf", "web/a.conf", true],
    ["web/*.conf", "web/sub/a.conf", false],
    ["web/?.conf", "web/a.conf", true],
    ["/etc/app/**", "/etc/app/site.conf", true],
    ["tick.service", "tick.service", true],
    ["web/a+b(1).txt", "web/a+b(1).txt", true],
  ])("%s matches %s: %s", (glob, path, matches) => {
    expect(globMatches(glob, path)).toBe(matches);
  });
});

describe("the tidemark/<env>/drift status", () => {
  const sha = "a".repeat(40);
  const clean = (host: string): HostDrift => ({ host, state: "clean", findings: [] });
  const drifted = (host: string, ...paths: string[]): HostDrift => ({
    host,
    state: "drift",
    findings: paths.map((path) => ({ kind: "modified", path })),
  });
  const line = (hosts: HostDrift[]) => {
    const status = driftStatus("production", sha, hosts);
    return `${status.context} ${status.state} ${status.description}`;
  };

  it("is green with the hosts counted when none drifted, and says how many could not be checked", () => {
    expect(line(Array.from({ length: 10 }, (_, i) => clean(`web${i}`)))).toBe("tidemark/production/drift success no drift on 10 hosts");
    expect(line([clean("web01"), { host: "web02", state: "unreachable", findings: [] }])).toBe(
      "tidemark/production/drift success no drift on 1 host (1 not checked)",
    );
  });

  it("is red naming the first drifted host, its first findings and how many more hosts drifted", () => {
    expect(line([clean("web01"), drifted("web02", "nginx/nginx.conf")])).toBe(
      "tidemark/production/drift failure web02: nginx/nginx.conf modified",
    );
    expect(line([drifted("web01", "a/1", "a/2", "a/3", "a/4", "a/5"), drifted("web02", "b/1"), drifted("web03", "c/1")])).toBe(
      "tidemark/production/drift failure web01: a/1 modified, a/2 modified, a/3 modified and 2 more (+2 more hosts)",
    );
  });

  it("puts a fighting host first, and turns green once every drifted host was healed", () => {
    expect(line([drifted("web01", "a/1"), { ...drifted("web02", "b/1"), fighting: true }])).toBe(
      "tidemark/production/drift failure web02: fighting (healed 3 times within an hour, changed again): b/1 modified (+1 more host)",
    );
    expect(line([clean("web01"), { ...drifted("web02", "b/1"), healed: "d-1" }])).toBe(
      "tidemark/production/drift success healed web02: b/1 modified; 1 clean",
    );
  });
});
