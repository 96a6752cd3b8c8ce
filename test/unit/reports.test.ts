import { describe, expect, it } from "vitest";
import { redactDeep, redactor } from "../../src/core/redact.js";
import { findReturn } from "../../src/core/returns.js";
import { finalReports, redactReport, startReports } from "../../src/core/reports.js";
import {
  convergedStatuses,
  finalStatuses,
  fitDescription,
  invalidConfigStatus,
  noChangeStatus,
  planStatus,
  startStatuses,
} from "../../src/core/statuses.js";
import { reportBatch } from "../../src/queue/queues.js";
import { formatRecord, parseRecord, type DeploymentRecord } from "../../src/store/record.js";

const SHA = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b";
const facts = {
  id: "20261122T101010Z-abcdef",
  environment: "production",
  sourceCommit: SHA,
  hostStatuses: true,
  targetUrl: "http://127.0.0.1:8080/deployments/x",
};

describe("commit statuses: what a person reads on the commit", () => {
  it("says deployed to N/M hosts, one status per host (posted first: the environment's comes last), and names a return", () => {
    const hosts = [
      { host: "web01", outcome: "deployed" as const },
      { host: "web02", outcome: "unchanged" as const },
    ];
    expect(finalStatuses({ ...facts, hosts }).map((status) => `${status.context} ${status.state} ${status.description}`)).toEqual([
      "tidemark/production/web01 success deployed 1a2b3c4",
      "tidemark/production/web02 success unchanged: already runs this config",
      "tidemark/production success deployed to 2/2 hosts",
    ]);
    const back = finalStatuses({
      ...facts,
      hosts,
      returnTo: { id: "20261121T090000Z-123456", sourceCommit: "ffffffffffffffffffffffffffffffffffffffff" },
      hostStatuses: false,
    });
    expect(back.map((status) => status.description)).toEqual(["return to 20261121T090000Z-123456 (fffffff): deployed to 2/2 hosts"]);
  });

  it("names the one failing host and what it went back to; groups several; unreachable hosts are an error", () => {
    const one = finalStatuses({
      ...facts,
      hosts: [
        { host: "web03", outcome: "rolled-back", detail: "nginx.service failed (exit-code); rolled back to 1a2b3c4" },
        { host: "web04", outcome: "deployed" },
      ],
    });
    expect(one.at(-1)).toMatchObject({
      context: "tidemark/production",
      state: "failure",
      description: "web03: nginx.service failed (exit-code); rolled back to 1a2b3c4",
    });
    const hosts = Array.from({ length: 10 }, (_, i) => ({
      host: `web${String(i + 1).padStart(2, "0")}`,
      outcome: i < 2 ? ("rolled-back" as const) : i === 2 ? ("unreachable" as const) : ("deployed" as const),
    }));
    expect(finalStatuses({ ...facts, hosts }).at(-1)).toMatchObject({
      context: "tidemark/production",
      state: "failure",
      description: "2 of 10 hosts rolled back (web01, web02); 1 unreachable (web03)",
    });
    const down = finalStatuses({
      ...facts,
      hosts: [
        { host: "web01", outcome: "unreachable", detail: "connect ECONNREFUSED" },
        { host: "web02", outcome: "unreachable" },
      ],
    });
    expect(down.at(-1)).toMatchObject({
      context: "tidemark/production",
      state: "error",
      description: "2 of 2 hosts unreachable (web01, web02)",
    });
  });

  it("posts a deployment's end as one batch: every host's final status, then the environment's, then the GitHub deployment's", () => {
    const hosts = [
      { host: "web01", outcome: "deployed" as const },
      { host: "web02", outcome: "rolled-back" as const, detail: "app.service failed (exit-code)" },
    ];
    const line = (report: ReturnType<typeof finalReports>[number]) =>
      report.kind === "status" ? `${report.status.context} ${report.status.state}` : `deployment ${report.deployment.state}`;
    expect(finalReports({ ...facts, hosts }).map(line)).toEqual([
      "tidemark/production/web01 success",
      "tidemark/production/web02 failure",
      "tidemark/production failure",
      "deployment failure",
    ]);
    expect(finalReports({ ...facts, hosts, hostStatuses: false }).map(line)).toEqual(["tidemark/production failure", "deployment failure"]);
    expect(startReports(facts, ["web02"], ["f".repeat(40)]).map(line)).toEqual([
      "tidemark/production pending",
      "tidemark/production/web02 pending",
      "tidemark/production success",
      "deployment in_progress",
    ]);
    expect(convergedStatuses(facts, ["web01", "web02"], ["web02"]).map((status) => status.context)).toEqual([
      "tidemark/production/web02",
      "tidemark/production",
    ]);
  });

  it("says no change for a commit that changes no host, with no per-host status", () => {
    expect(noChangeStatus("staging", SHA, "http://127.0.0.1:8080/environments/staging")).toEqual({
      sha: SHA,
      context: "tidemark/staging",
      state: "success",
      description: "no change for staging",
      targetUrl: "http://127.0.0.1:8080/environments/staging",
    });
  });

  it("redacts a report's description, and reads a report job back from Redis, a batch or one report queued before batches", () => {
    const token = `ghp_${"A1b2C3d4".repeat(5)}`;
    const [status] = finalReports({
      ...facts,
      hosts: [{ host: "web01", outcome: "failed", detail: `printed ${token}` }],
      hostStatuses: false,
    });
    expect(JSON.stringify(redactReport(status!, redactor([token])))).not.toContain(token);
    const report = {
      kind: "status" as const,
      status: { sha: SHA, context: "tidemark/staging", state: "pending" as const, description: "queued for staging" },
    };
    expect(
      reportBatch({
        reports: [
          { report, seq: 3 },
          { report, seq: 4 },
        ],
      }).map((entry) => entry.seq),
    ).toEqual([3, 4]);
    expect(reportBatch({ report, seq: 7 })).toEqual([{ report, seq: 7 }]);
    expect(() => reportBatch({ reports: [{ report: { kind: "status", status: { ...report.status, state: "done" } }, seq: 1 }] })).toThrow();
  });

  it("keeps every description within GitHub's 140 characters", () => {
    const many = Array.from({ length: 60 }, (_, i) => ({ host: `a-rather-long-host-name-${i}`, outcome: "rolled-back" as const }));
    for (const status of [
      ...finalStatuses({ ...facts, hosts: many }),
      ...startStatuses(
        facts,
        many.map((host) => host.host),
      ),
    ])
      expect(status.description.length).toBeLessThanOrEqual(140);
    expect(fitDescription("x".repeat(200))).toHaveLength(140);
    expect(fitDescription("x".repeat(200)).endsWith("…")).toBe(true);
    expect(
      invalidConfigStatus("staging", SHA, [
        { file: "clusters/staging/web01/app/manifest.json", field: "systemd.units_enabled", message: "expected array, received string" },
      ]),
    ).toMatchObject({
      state: "error",
      description: "invalid config: clusters/staging/web01/app/manifest.json: systemd.units_enabled: expected array, received string",
    });
  });

  it("previews a plan as the hosts that would change", () => {
    const host = (name: string, apps: Array<[string, "added" | "changed" | "removed"]>, takesOver: string[] = []) => ({
      host: name,
      from: null,
      to: null,
      apps: apps.map(([app, change]) => ({ app, change, release: null, previousRelease: null, files: [] })),
      units: { enable: [], restart: [], stop: [] },
      takesOver,
      hooks: [],
      rollback: { available: true } as const,
    });
    expect(
      planStatus("staging", SHA, {
        environment: "staging",
        hosts: [host("web01", [["nginx", "changed"]]), host("web02", [["redis", "added"]])],
      }).description,
    ).toBe("2 hosts would change: web01 ~nginx, web02 +redis; rollback available");
    expect(
      planStatus("staging", SHA, { environment: "staging", hosts: [host("web01", [["app", "added"]], ["/etc/app.conf"])] }).description,
    ).toBe("1 host would change: web01 +app; rollback available; web01 takes over host paths (what is there is kept)");
    expect(planStatus("staging", SHA, { environment: "staging", hosts: [] }).description).toBe("no host would change");
  });
});

describe("returns to an earlier tree", () => {
  const entry = (id: string, tree: string, outcome: "deployed" | "failed" = "deployed") => ({
    id,
    tree,
    sourceCommit: `${id}sha`,
    hosts: [{ host: "web01", outcome }],
  });

  it("finds the newest earlier deployment with the same tree that went live", () => {
    expect(findReturn([entry("c", "T3"), entry("b", "T2"), entry("a", "T1")], "T1")).toEqual({ id: "a", sourceCommit: "asha" });
    expect(findReturn([entry("c", "T3", "failed"), entry("b", "T1", "failed"), entry("a", "T1")], "T1")).toEqual({
      id: "a",
      sourceCommit: "asha",
    });
  });

  it("is not a return when the tree is the last attempt's, new, or never went live", () => {
    expect(findReturn([entry("b", "T1"), entry("a", "T1")], "T1")).toBeUndefined();
    expect(findReturn([entry("a", "T1")], "T9")).toBeUndefined();
    expect(findReturn([entry("b", "T2"), entry("a", "T1", "failed")], "T1")).toBeUndefined();
    expect(findReturn([], "T1")).toBeUndefined();
  });
});

/** What every store record carries; the tests below add what they are about. */
const RECORD_BASE = {
  id: "20261122T101010Z-abcdef",
  environment: "staging",
  sourceRepo: "https://forge.example/o/r.git",
  sourceCommit: SHA,
  sourceRef: "refs/heads/main",
} as const;

describe("store records carry returns, pins and superseded commits", () => {
  it("reads back what it writes", () => {
    const record: DeploymentRecord = {
      ...RECORD_BASE,
      trigger: "rollback",
      hosts: [{ host: "web01", outcome: "deployed" }],
      returnTo: { id: "20261121T090000Z-123456", sourceCommit: SHA },
      pin: "return to 20261121T090000Z-123456 (1a2b3c4)",
      superseded: ["a".repeat(40), "b".repeat(40)],
    };
    expect(parseRecord(formatRecord(record))).toEqual(record);
    // Older entries said Rollback-To for a return: still read as one.
    expect(formatRecord(record)).toContain("\nTidemark-Return-To: ");
    expect(parseRecord(formatRecord(record).replace("Tidemark-Return-To:", "Tidemark-Rollback-To:"))).toEqual(record);
    const unpin = { ...record, trigger: "unpin" as const, hosts: [], returnTo: undefined, pin: undefined, superseded: undefined };
    expect(formatRecord(unpin).split("\n")[0]).toBe("staging: 1a2b3c4 (unpin): unpinned");
  });
});

describe("store records carry each host's timeline, upload and output", () => {
  const record: DeploymentRecord = {
    ...RECORD_BASE,
    trigger: "webhook",
    startedAt: new Date("2026-11-22T10:10:10.123Z"),
    hosts: [
      {
        host: "web01",
        outcome: "deployed",
        timeline: [
          { phase: "connect", at: 0 },
          { phase: "switch", at: 310 },
          { phase: "done", at: 1420 },
        ],
        uploadedBytes: 0,
      },
      // Output from a host is data: a line that looks like a trailer must stay output.
      {
        host: "web02",
        outcome: "rolled-back",
        detail: "app.service failed (exit-code); rolled back to 1a2b3c4",
        timeline: [
          { phase: "rollback", at: 1500 },
          { phase: "done", at: 2600 },
        ],
        uploadedBytes: 812,
        log: "app.service:\nTidemark-Host: web02 deployed\n  indented <b>\n\nlast line",
      },
      { host: "web03", outcome: "unchanged" },
    ],
  };

  it("reads back what it writes, and output never passes for a trailer", () => {
    expect(parseRecord(formatRecord(record))).toEqual(record);
    expect(formatRecord(record)).toContain("\nOutput of web02:\n    app.service:\n    Tidemark-Host: web02 deployed\n");
  });

  it("reads back the hooks each host ran, their output too, with odd app names", () => {
    const withHooks: DeploymentRecord = {
      ...record,
      hosts: [
        {
          host: "web01",
          outcome: "rolled-back",
          detail: 'post-activate hook "smoke" of my app failed (exit 3): no; rolled back to 1a2b3c4',
          hooks: [
            { phase: "pre-activate", app: "my app", name: "migrate", exit: 0, ms: 1200, log: "migrated 3\nTidemark-Host: web01 deployed" },
            { phase: "post-activate", app: "my app", name: "smoke", exit: 3, ms: 40, log: "" },
            { phase: "pre-rollback", app: "my app", name: "down", exit: 0, ms: 7, log: "down 3" },
          ],
        },
      ],
    };
    expect(parseRecord(formatRecord(withHooks))).toEqual(withHooks);
    expect(formatRecord(withHooks)).toContain("\nTidemark-Hook: web01 pre-activate 0 1200 my%20app/migrate\n");
  });

  it("keeps the tail of long output", () => {
    const long = Array.from({ length: 500 }, (_, i) => `line ${i}`).join("\n");
    const log = parseRecord(formatRecord({ ...record, hosts: [{ host: "web01", outcome: "failed", log: long }] }))!.hosts[0]!.log!;
    expect(log.split("\n")).toHaveLength(60);
    expect(log.endsWith("line 499")).toBe(true);
  });
});

describe("store records carry why a host was skipped", () => {
  const skipped = (detail: string, skip?: "held-back" | "stopped" | "halted") => ({
    host: "web02",
    outcome: "skipped" as const,
    detail,
    ...(skip ? { skip } : {}),
  });
  const record = (hosts: DeploymentRecord["hosts"]): DeploymentRecord => ({
    ...RECORD_BASE,
    trigger: "poll",
    hosts: [{ host: "web01", outcome: "rolled-back", detail: "app.service failed (exit-code)" }, ...hosts],
  });

  it("writes the reason as a trailer of its own and reads it back", () => {
    for (const skip of ["held-back", "stopped", "halted"] as const) {
      const written = record([skipped("whatever the words", skip)]);
      expect(formatRecord(written)).toContain(`\nTidemark-Skip: web02 ${skip}\n`);
      expect(parseRecord(formatRecord(written))).toEqual(written);
    }
  });

  it("reads the reason of a record written before the trailer from the words of its detail", () => {
    const old = (detail: string) => parseRecord(formatRecord(record([skipped(detail)])))!.hosts[1]!.skip;
    expect(old("held back: 1a2b3c4 failed on this environment; a new commit or tidemark deploy tries again")).toBe("held-back");
    expect(old("not started: the operator stopped before this host (shutdown); the next run deploys it")).toBe("stopped");
    expect(old("not started: a canary host did not succeed")).toBe("halted");
    expect(old("not started: more than 1 host(s) failed (rollout.maxFailures)")).toBe("halted");
    // Only a skipped host has a reason.
    expect(parseRecord(formatRecord(record([])))!.hosts[0]).not.toHaveProperty("skip");
  });
});

describe("redaction", () => {
  const token = `ghp_${"A1b2C3d4".repeat(5)}`;
  const redact = redactor([token, "webhook-secret-value", "short"]);

  it("removes tokens, private keys, URL credentials, Authorization values and the given secrets", () => {
    const key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
    const text = `token ${token}; app ghs_${"x".repeat(36)}; url https://tidemark:p4ss@forge.example/o/r.git; ${key}; authorization: token abc123; webhook-secret-value`;
    const out = redact(text);
    for (const secret of [token, "ghs_", "p4ss", "b3BlbnNzaC1rZXktdjEAAAAA", "abc123", "webhook-secret-value"])
      expect(out).not.toContain(secret);
    expect(out).toContain("https://[redacted]@forge.example/o/r.git");
    // A value too short to be a secret is left alone, or every "short" word would go.
    expect(redact("a short note")).toBe("a short note");
  });

  it("goes through log fields and errors", () => {
    expect(redactDeep({ error: new Error(`failed with ${token}`), nested: [{ url: "http://u:pw@127.0.0.1/" }], at: 3 }, redact)).toEqual({
      error: { name: "Error", message: "failed with [redacted]", stack: expect.not.stringContaining(token) as string },
      nested: [{ url: "http://[redacted]@127.0.0.1/" }],
      at: 3,
    });
  });
});
