import { describe, expect, it } from "vitest";
import { distinctProblems, readEnvTree } from "../../src/config/config-tree.js";
import { parseSourceConfig } from "../../src/config/source-config.js";
import type { EnvTree, SourceConfig } from "../../src/core/config.js";
import { withOrigins } from "../../src/core/layers.js";
import { planEnvironment } from "../../src/core/plan.js";
import { renderPlan } from "../../src/core/render-plan.js";
import { readTreePair } from "../../src/git/tree-reader.js";
import { atSource, layerEnvironment } from "../../src/pipeline/layer-environment.js";
import { memoryObjects, memoryTree, type GitObject, type MemoryFile } from "../helpers/memory-tree.js";

/**
 * An environment's layers applied as planning applies them: the tree built in
 * memory with git's own oids, read through Tidemark's tree reader.
 */
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP9WQ3gSqUztxtk1aQBwZi6P14HeSQ+AXA4AurcSCyfe";
const YAML = `
environments:
  production: { track: { branch: main }, tree: fleet, vars: { port: 80, root: /srv/www } }
hosts:
  web01: { address: 127.0.0.1, port: 2201, hostKey: "${KEY}" }
  web02: { address: 127.0.0.2, port: 2202, hostKey: "${KEY}" }
  web03: { address: 127.0.0.3, port: 2203, hostKey: "${KEY}", vars: { port: 8080 } }
  db01: { address: 127.0.0.4, port: 2204, hostKey: "${KEY}" }
groups:
  web: { hosts: [web01, web02, web03], vars: { port: 81, tier: front } }
  eu: [web02, db01]
`;

const SHARED: Record<string, MemoryFile> = {
  "_all/base/motd": "welcome\n",
  "_all/base/manifest.json": '{ "checks": [] }\n',
  "_groups/web/nginx/nginx.conf": "worker_processes 2;\n",
  "_groups/web/nginx/site.conf.tmpl":
    "listen {{ vars.port }};\nserver_name {{ host.name }} {{ host.address }};\n# {{ host.groups | join: ',' }} {{ environment }} {{ vars.tier }}\n",
  "_groups/eu/base/tz": "Europe/Paris\n",
  "web03/nginx/nginx.conf": "worker_processes 8;\n",
};

function config(yaml = YAML): SourceConfig {
  const parsed = parseSourceConfig(yaml);
  if (!parsed.config || parsed.problems.length > 0) throw new Error(JSON.stringify(parsed.problems));
  return parsed.config;
}

/** The effective environment tree, layered from `files` (relative to the tree), read whole. */
async function layered(files: Record<string, MemoryFile>, cfg = config(), live = new Map<string, string>()) {
  const objects: GitObject[] = [];
  const root = memoryTree(files, objects);
  const result = await layerEnvironment(memoryObjects(objects), cfg, "production", root.oid, live);
  const [dir] = await readTreePair({ reader: result.objects, oid: result.oid, sizes: true }, undefined);
  const { tree, problems } = readEnvTree(cfg, "production", dir);
  const all = distinctProblems([...result.problems, ...problems.map((problem) => atSource(result, "fleet", problem))]);
  return { ...result, sourceOid: root.oid, tree, problems: all };
}

/** A tree written out by hand: what the layers must be equal to, oid for oid. */
function handWritten(files: Record<string, MemoryFile>): string {
  return memoryTree(files, []).oid;
}

const hostOid = (tree: EnvTree, host: string) => tree.hosts.get(host)?.oid;
const planned = (before: EnvTree, after: EnvTree) => planEnvironment("production", after, before.hosts).hosts.map((host) => host.host);

describe("an environment's layers", () => {
  it("gives each host the tree it would have if written out by hand, oid for oid, templates rendered", async () => {
    const { tree, problems, origins } = await layered(SHARED);
    expect(problems).toEqual([]);
    expect(hostOid(tree, "web01")).toBe(
      handWritten({
        "base/motd": "welcome\n",
        "base/manifest.json": '{ "checks": [] }\n',
        "nginx/nginx.conf": "worker_processes 2;\n",
        "nginx/site.conf": "listen 81;\nserver_name web01 127.0.0.1;\n# web production front\n",
      }),
    );
    // web02 is in both groups: eu adds a file; web03's own nginx.conf wins and its own port wins over the group's.
    expect(hostOid(tree, "web02")).toBe(
      handWritten({
        "base/motd": "welcome\n",
        "base/manifest.json": '{ "checks": [] }\n',
        "base/tz": "Europe/Paris\n",
        "nginx/nginx.conf": "worker_processes 2;\n",
        "nginx/site.conf": "listen 81;\nserver_name web02 127.0.0.2;\n# web,eu production front\n",
      }),
    );
    expect(hostOid(tree, "web03")).toBe(
      handWritten({
        "base/motd": "welcome\n",
        "base/manifest.json": '{ "checks": [] }\n',
        "nginx/nginx.conf": "worker_processes 8;\n",
        "nginx/site.conf": "listen 8080;\nserver_name web03 127.0.0.3;\n# web production front\n",
      }),
    );
    expect(hostOid(tree, "db01")).toBe(
      handWritten({ "base/motd": "welcome\n", "base/manifest.json": '{ "checks": [] }\n', "base/tz": "Europe/Paris\n" }),
    );
    expect(Object.fromEntries(origins.get("web03")!)).toEqual({
      "base/manifest.json": { layer: "_all" },
      "base/motd": { layer: "_all" },
      "nginx/nginx.conf": { layer: "web03" },
      "nginx/site.conf": { layer: "_groups/web", template: "site.conf.tmpl" },
    });
  });

  it("plans exactly the hosts that inherit a changed file: a host's own file shields it", async () => {
    const before = await layered(SHARED);
    const withoutMotd = Object.fromEntries(Object.entries(SHARED).filter(([path]) => path !== "_all/base/motd"));
    const after = await layered({
      ...withoutMotd,
      "_groups/web/nginx/nginx.conf": "worker_processes 4;\n",
      "_all/base/motd.tmpl": "{{ host.name }}\n",
    });
    expect(planned(before.tree, after.tree)).toEqual(["db01", "web01", "web02", "web03"]);
    // What plan prints: where each changed file comes from.
    const text = renderPlan(withOrigins(planEnvironment("production", after.tree, before.tree.hosts), after.origins));
    expect(text).toContain("web01  ");
    expect(text.split("\n").filter((line) => line.startsWith("      "))).toEqual([
      "      ~ motd  ← _all, rendered",
      "      ~ motd  ← _all, rendered",
      "      ~ nginx.conf  ← _groups/web",
      "      ~ motd  ← _all, rendered",
      "      ~ nginx.conf  ← _groups/web",
      "      ~ motd  ← _all, rendered",
    ]);
    const web = await layered({ ...SHARED, "_groups/web/nginx/nginx.conf": "worker_processes 4;\n" });
    expect(planned(before.tree, web.tree)).toEqual(["web01", "web02"]);
  });

  it("plans only the host whose values changed", async () => {
    const before = await layered(SHARED);
    const after = await layered(SHARED, config(YAML.replace("vars: { port: 8080 }", "vars: { port: 8443 }")));
    expect(planned(before.tree, after.tree)).toEqual(["web03"]);
  });

  it("gives a host the same tree whatever layers made it", async () => {
    const shared = await layered({ "_all/app/a": "1\n", "web01/app/b": "2\n", "web02/app/a": "1\n", "web02/app/b": "2\n" });
    expect(hostOid(shared.tree, "web01")).toBe(hostOid(shared.tree, "web02"));
    // web02 written out by hand is the source's own tree: the same oid as layered.
    expect(hostOid(shared.tree, "web02")).toBe(handWritten({ "app/a": "1\n", "app/b": "2\n" }));
  });

  it("keeps a flat tree as it is, oid for oid, and renders a host's own templates", async () => {
    const flat = { "web01/app/a": "1\n", "web02/app/b": "2\n" };
    const result = await layered(flat);
    expect(result.oid).toBe(result.sourceOid);
    expect(result.built.size).toBe(0);
    const templated = await layered({ ...flat, "web02/app/c.tmpl": "{{ vars.root }}\n" });
    expect(hostOid(templated.tree, "web01")).toBe(hostOid(result.tree, "web01"));
    expect(hostOid(templated.tree, "web02")).toBe(handWritten({ "app/b": "2\n", "app/c": "/srv/www\n" }));
  });

  it("renders a value as data: braces, quotes, $(...) and newlines reach the file as written", async () => {
    const value = `{{ vars.port }} "double" 'single' $(touch /tmp/pwned) \`id\` {% raw %}\nsecond line`;
    const yaml = YAML.replace("vars: { port: 8080 }", `vars: { banner: ${JSON.stringify(value)} }`);
    const { tree, problems } = await layered({ "web03/app/banner.tmpl": "{{ vars.banner }}\n" }, config(yaml));
    expect(problems).toEqual([]);
    expect(hostOid(tree, "web03")).toBe(handWritten({ "app/banner": `${value}\n` }));
  });

  it("reports every template's problem at once, at its file and line", async () => {
    const { problems } = await layered({
      ...SHARED,
      "_all/base/a.tmpl": "ok\n{{ vars.missing }}\n",
      "web01/nginx/b.tmpl": "{{ vars.port | shout }}\n",
    });
    expect(problems).toEqual([
      expect.objectContaining({
        file: "fleet/_all/base/a.tmpl",
        field: "line 2, column 4",
        message: expect.stringContaining("vars.missing has no value") as string,
      }),
      expect.objectContaining({
        file: "fleet/web01/nginx/b.tmpl",
        field: "line 1, column 1",
        message: expect.stringContaining("no filter named shout") as string,
      }),
    ]);
  });

  it("cuts off a template that runs away", async () => {
    const { problems } = await layered({ "web01/app/big.tmpl": "{% for i in (1..100000000) %}x{% endfor %}\n" });
    expect(problems).toEqual([
      {
        file: "fleet/web01/app/big.tmpl",
        field: "line 1, column 1",
        message: "the template makes more than 64 MiB: a loop or a value grows without bound",
      },
    ]);
  });

  it("names a shared file's problem once, at the layer that holds it", async () => {
    const { problems } = await layered({ ...SHARED, "_all/base/manifest.json": '{ "checks": [], "units": [] }\n' });
    expect(problems).toEqual([{ file: "fleet/_all/base/manifest.json", field: "(top level)", message: 'Unrecognized key: "units"' }]);
  });

  it("refuses a group directory for no group, and files beside a layer's apps", async () => {
    const { problems } = await layered({ ...SHARED, "_groups/ghost/app/x": "x\n", "_all/README": "x\n" });
    expect(problems).toEqual([
      { file: "fleet/_groups/ghost", message: "directory for group ghost, which is not in groups: in tidemark.yaml" },
      { file: "fleet/_all/README", message: "files belong in an app directory (_all/<app>/...)" },
    ]);
  });
});
