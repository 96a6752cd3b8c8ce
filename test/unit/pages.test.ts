import { describe, expect, it } from "vitest";
import type { HistoryEntry } from "../../src/store/store.js";
import { href, html } from "../../src/web/html.js";
import { deploymentPage, timeline } from "../../src/web/pages.js";

const SHA = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";

describe("the page's markup", () => {
  it("escapes every value and keeps markup made by html", () => {
    const name = `<script>alert("x")</script>&'`;
    expect(html`<p title="${name}">${name}${html`<b>${name}</b>`}</p>`.text).toBe(
      '<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;<b>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;</b></p>',
    );
    expect(html`${[1, null, undefined, false, "a"]}`.text).toBe("1a");
    expect(href("deployments", "../x?y#z")).toBe("/deployments/..%2Fx%3Fy%23z");
  });

  it("shows a deployment's names, plan and output as text", () => {
    const entry: HistoryEntry = {
      id: "20261122T101010Z-abcdef",
      environment: "staging",
      sourceRepo: "https://forge.example/o/r.git",
      sourceCommit: SHA,
      sourceRef: "refs/heads/main",
      trigger: "webhook",
      commit: SHA,
      tree: SHA,
      at: new Date("2026-11-22T10:10:12Z"),
      hosts: [
        {
          host: "web01",
          outcome: "rolled-back",
          detail: "app.service failed (exit-code); rolled back to 1a2b3c4",
          log: "<script>alert(1)</script>",
          timeline: [
            { phase: "connect", at: 0 },
            { phase: "done", at: 100 },
          ],
        },
      ],
    };
    const plan = [
      {
        host: "web01",
        from: null,
        to: SHA,
        apps: [
          {
            app: "app",
            change: "changed" as const,
            release: SHA,
            previousRelease: SHA,
            files: [{ path: "<img src=x onerror=alert(1)>.conf", change: "added" as const }],
          },
        ],
        units: { enable: [], restart: ["app.service"], stop: [] },
        takesOver: [],
        hooks: [],
        rollback: { available: true as const },
      },
    ];
    const page = deploymentPage({ entry, plan }, "https://forge.example/o/r.git").text;
    expect(page).not.toMatch(/<script>alert|<img src=x/);
    expect(page).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(page).toContain("+ &lt;img src=x onerror=alert(1)&gt;.conf");
    expect(page).toContain("app.service failed (exit-code); rolled back to 1a2b3c4");
  });

  it("lays out a host's steps with their durations; the steps after rollback are marked", () => {
    const text = timeline([
      { phase: "connect", at: 0 },
      { phase: "switch", at: 200 },
      { phase: "rollback", at: 1200 },
      { phase: "switch", at: 1250 },
      { phase: "done", at: 1400 },
    ]).text;
    const rows = [...text.matchAll(/<tr class="([^"]*)"><td>([^<]+)<\/td><td>([^<]+)<\/td><td>([^<]+)<\/td><\/tr>/g)].map((m) =>
      m.slice(1).join(" | "),
    );
    expect(rows).toEqual([
      " | connect | +0.00 s | 200 ms",
      " | switch | +0.20 s | 1000 ms",
      "bad | rollback | +1.20 s | 50 ms",
      "bad | switch (rollback) | +1.25 s | 150 ms",
    ]);
  });
});
