import { describe, expect, it } from "vitest";
import type { HostTree } from "../../src/core/config.js";
import { planEnvironment } from "../../src/core/plan.js";
import { renderPlan } from "../../src/core/render-plan.js";
import { stagingTree } from "../helpers/configs.js";
import type { MemoryFile } from "../helpers/memory-tree.js";

const manifest = (value: object) => JSON.stringify(value);
const NGINX = {
  "web01/nginx/nginx.conf": "worker_processes 1;",
  "web01/nginx/systemd/nginx.service": "[Service]\nExecStart=/usr/sbin/nginx\n",
  "web01/nginx/manifest.json": manifest({ systemd: { units_enabled: ["nginx.service"] } }),
};

function tree(files: Record<string, MemoryFile>) {
  const { tree, problems } = stagingTree(files);
  expect(problems).toEqual([]);
  return tree;
}

/** What the store would say is live: each host's tree as deployed. */
function live(files: Record<string, MemoryFile>): Map<string, HostTree> {
  return tree(files).hosts;
}

describe("planEnvironment", () => {
  it("plans an age file under the name it deploys as, marked a secret on either side, its content never shown", () => {
    const before = { ...NGINX, "web01/nginx/db.env.age": "age ciphertext 1" };
    const after = { ...NGINX, "web01/nginx/db.env.age": "age ciphertext 2", "web01/nginx/db.env.example": "DB_PASSWORD=" };
    const plan = planEnvironment("staging", tree(after), live(before));
    expect(plan.hosts[0]!.apps[0]!.files).toEqual([
      { path: "db.env", change: "changed", secret: true },
      { path: "db.env.example", change: "added" },
    ]);
    expect(renderPlan(plan)).toContain("      ~ db.env  secret changed\n      + db.env.example\n");
    expect(planEnvironment("staging", tree(NGINX), live(after)).hosts[0]!.apps[0]!.files).toEqual([
      { path: "db.env", change: "removed", secret: true },
      { path: "db.env.example", change: "removed" },
    ]);
  });

  it("plans a first deployment: every app added, its units enabled and started", () => {
    const plan = planEnvironment("staging", tree(NGINX), new Map());
    expect(plan.hosts).toHaveLength(1);
    const [web01] = plan.hosts;
    expect(web01).toMatchObject({
      host: "web01",
      from: null,
      rollback: { available: true },
      units: { enable: ["nginx.service"], restart: ["nginx.service"], stop: [] },
    });
    expect(web01!.apps).toEqual([
      {
        app: "nginx",
        change: "added",
        release: expect.stringMatching(/^[0-9a-f]{40}$/) as string,
        previousRelease: null,
        files: [
          { path: "manifest.json", change: "added" },
          { path: "nginx.conf", change: "added" },
          { path: "systemd/nginx.service", change: "added" },
        ],
      },
    ]);
  });

  it("plan_detects_changed_files", () => {
    const plan = planEnvironment("staging", tree({ ...NGINX, "web01/nginx/nginx.conf": "worker_processes 2;" }), live(NGINX));
    expect(plan.hosts[0]!.apps).toMatchObject([{ app: "nginx", change: "changed", files: [{ path: "nginx.conf", change: "changed" }] }]);
    expect(plan.hosts[0]!.units).toEqual({ enable: [], restart: ["nginx.service"], stop: [] });
  });

  it("plan_detects_added_and_removed_apps", () => {
    const redis = {
      "web01/redis/redis.conf": "port 6379",
      "web01/redis/manifest.json": manifest({ systemd: { units_enabled: ["redis.service"] } }),
    };
    const plan = planEnvironment("staging", tree(redis), live(NGINX));
    expect(plan.hosts[0]!.apps.map((app) => [app.app, app.change])).toEqual([
      ["nginx", "removed"],
      ["redis", "added"],
    ]);
    expect(plan.hosts[0]!.units).toEqual({ enable: ["redis.service"], restart: ["redis.service"], stop: ["nginx.service"] });
  });

  it("plan_detects_unit_set_changes", () => {
    const next = {
      ...NGINX,
      "web01/nginx/manifest.json": manifest({ systemd: { units_enabled: ["nginx.service", "nginx-reload.timer"] } }),
    };
    expect(planEnvironment("staging", tree(next), live(NGINX)).hosts[0]!.units).toEqual({
      enable: ["nginx-reload.timer"],
      restart: ["nginx-reload.timer", "nginx.service"],
      stop: [],
    });
    expect(planEnvironment("staging", tree(NGINX), live(next)).hosts[0]!.units).toEqual({
      enable: [],
      restart: ["nginx.service"],
      stop: ["nginx-reload.timer"],
    });
  });

  it("plans the host paths a deployment links for the first time as taken over, with rollback available", () => {
    const linked = {
      ...NGINX,
      "web01/nginx/manifest.json": manifest({
        systemd: { units_enabled: ["nginx.service"] },
        symlinks: { "/etc/nginx/nginx.conf": "nginx.conf" },
      }),
    };
    const plan = planEnvironment("staging", tree(linked), live(NGINX));
    expect(plan.hosts[0]).toMatchObject({ takesOver: ["/etc/nginx/nginx.conf"], rollback: { available: true } });
    expect(renderPlan(plan)).toContain(
      "  takes over /etc/nginx/nginx.conf (what is there now is kept on the host, and put back when the link goes)",
    );

    // A first deployment takes it over too; its unit's link is not named (the host keeps whatever any link displaces).
    expect(planEnvironment("staging", tree(linked), new Map()).hosts[0]!.takesOver).toEqual(["/etc/nginx/nginx.conf"]);

    // Once deployed, the link is Tidemark's: changing the app again takes nothing over.
    const again = { ...linked, "web01/nginx/nginx.conf": "worker_processes 4;" };
    expect(planEnvironment("staging", tree(again), live(linked)).hosts[0]).toMatchObject({ takesOver: [], rollback: { available: true } });
    // Nor does removing it: the link goes and what it displaced comes back.
    expect(planEnvironment("staging", tree(NGINX), live(linked)).hosts[0]!.takesOver).toEqual([]);
  });

  it("plans nothing for an unchanged tree, without reading it", () => {
    const { hosts } = tree({ ...NGINX, "web02/nginx/nginx.conf": "x" });
    // As the loader hands them over: identical hosts are not read at all.
    const unread = new Map([...hosts].map(([name, host]) => [name, { oid: host.oid }]));
    expect(planEnvironment("staging", { oid: "x", hosts: unread }, unread)).toEqual({ environment: "staging", hosts: [] });
  });

  it("plans nothing again once the deployment is recorded", () => {
    const desired = tree({ ...NGINX, "web02/app/file": "1" });
    expect(planEnvironment("staging", desired, new Map()).hosts).toHaveLength(2);
    expect(planEnvironment("staging", desired, desired.hosts).hosts).toEqual([]);
  });

  it("leaves hosts whose tree did not change out of the plan", () => {
    const before = { ...NGINX, "web02/app/file": "1" };
    const plan = planEnvironment("staging", tree({ ...before, "web02/app/file": "2" }), live(before));
    expect(plan.hosts.map((host) => host.host)).toEqual(["web02"]);
  });

  it("renders the plan for people", () => {
    const plan = planEnvironment("staging", tree({ ...NGINX, "web01/nginx/nginx.conf": "worker_processes 2;" }), live(NGINX));
    expect(renderPlan(plan)).toMatch(
      /^staging: 1 host would change\n\nweb01 {2}[0-9a-f]{7} -> [0-9a-f]{7} {2}\(rollback available\)\n {2}~ nginx\n {6}~ nginx.conf\n {2}restart nginx.service\n$/,
    );
  });
});
