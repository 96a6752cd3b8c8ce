import { describe, expect, it } from "vitest";
import { blobObject, buildTrees } from "../../src/core/git-objects.js";
import { effectiveAppTree, hostLayers, overlayApp, type AppLayer } from "../../src/core/layers.js";
import type { Dir, Entry } from "../../src/core/tree.js";

/** An app dir as the tree reader gives it, from paths and contents ('x' mode: executable). */
function dir(files: Record<string, string | { text: string; executable: true }>): Dir {
  const root: Dir = { kind: "dir", oid: "", entries: new Map() };
  for (const [path, value] of Object.entries(files)) {
    const text = typeof value === "string" ? value : value.text;
    const names = path.split("/");
    let node = root;
    for (const name of names.slice(0, -1)) {
      const entries = node.entries as Map<string, Entry>;
      let next = entries.get(name) as Dir | undefined;
      if (!next) entries.set(name, (next = { kind: "dir", oid: "", entries: new Map() }));
      node = next;
    }
    const blob = blobObject(Buffer.from(text));
    (node.entries as Map<string, Entry>).set(names.at(-1)!, {
      kind: "file",
      oid: blob.oid,
      mode: typeof value === "string" ? "100644" : "100755",
      size: blob.body.length,
      ...(path === "manifest.json" ? { content: text } : {}),
    });
  }
  return root;
}

const layer = (name: string, files: Parameters<typeof dir>[0]): AppLayer => ({ layer: name, dir: dir(files) });
const sources = (app: ReturnType<typeof overlayApp>) => Object.fromEntries([...app.files].map(([path, file]) => [path, file.layer]));
const treeOf = (app: ReturnType<typeof overlayApp>) => effectiveAppTree(app.files).oid;

describe("layers of a config tree", () => {
  it("builds git's own tree ids: the same files make the same oid, as `git write-tree` gives it", () => {
    const hello = blobObject(Buffer.from("hello\n"));
    const run = blobObject(Buffer.from("x"));
    expect([hello.oid, run.oid]).toEqual(["ce013625030ba8dba906f756967f9e9ca394464a", "c1b0730e0133447badcfd47fd144e254807b06e1"]);
    const files = new Map([
      ["hello.txt", { oid: hello.oid, mode: "100644" as const }],
      ["d/run.sh", { oid: run.oid, mode: "100755" as const }],
    ]);
    expect(buildTrees(files).oid).toBe("9737f26f12c5c7d08e36389995d4c50cecc7d458");
    expect(buildTrees(new Map()).oid).toBe("4b825dc642cb6eb9a060e54bf8d69288fbee4904");
  });

  it("orders a host's layers: _all, its groups in the order groups: lists them, then the host", () => {
    const groups = [
      ["web", ["web01", "web02"]],
      ["eu", ["web02", "db01"]],
    ] as const;
    expect(hostLayers("web02", groups)).toEqual(["_all", "_groups/web", "_groups/eu", "web02"]);
    expect(hostLayers("db01", groups)).toEqual(["_all", "_groups/eu", "db01"]);
    expect(hostLayers("lone", groups)).toEqual(["_all", "lone"]);
  });

  it("overlays file by file, the later layer winning, and says where each file came from", () => {
    const app = overlayApp("fleet", "nginx", [
      layer("_all", { "nginx.conf": "all", "mime.types": "types", "site/index.html": "hi" }),
      layer("_groups/web", { "nginx.conf": "web" }),
      layer("web01", { "site/extra.html": "extra" }),
    ]);
    expect(app.problems).toEqual([]);
    expect(sources(app)).toEqual({
      "nginx.conf": "_groups/web",
      "mime.types": "_all",
      "site/index.html": "_all",
      "site/extra.html": "web01",
    });
    expect(app.files.get("nginx.conf")!.oid).toBe(blobObject(Buffer.from("web")).oid);
  });

  it("gives two hosts with the same effective files the same oid, whatever layers made them", () => {
    const shared = overlayApp("fleet", "app", [layer("_all", { "a.txt": "a", "b/c.txt": "c" }), layer("web01", {})]);
    const own = overlayApp("fleet", "app", [layer("web02", { "b/c.txt": "c", "a.txt": "a" })]);
    const split = overlayApp("fleet", "app", [layer("_all", { "a.txt": "a" }), layer("_groups/x", { "b/c.txt": "c" })]);
    expect(new Set([treeOf(shared), treeOf(own), treeOf(split)]).size).toBe(1);
  });

  it("a change in _all changes exactly the hosts that inherit that file; a host's own file shields it", () => {
    const fleet = (conf: string) =>
      new Map(
        [
          ["web01", [layer("_all", { "site.conf": conf, "other.txt": "o" })]],
          ["web02", [layer("_all", { "site.conf": conf, "other.txt": "o" })]],
          ["web03", [layer("_all", { "site.conf": conf, "other.txt": "o" }), layer("web03", { "site.conf": "mine" })]],
        ].map(([host, layers]) => [host as string, treeOf(overlayApp("fleet", "app", layers as AppLayer[]))]),
      );
    const [before, after] = [fleet("v1"), fleet("v2")];
    expect([...before.keys()].filter((host) => before.get(host) !== after.get(host))).toEqual(["web01", "web02"]);
  });

  it("takes inherited files away with a layer's remove: a file, or a directory and all below it", () => {
    const app = overlayApp("fleet", "app", [
      layer("_all", { "a.txt": "a", "docs/x.md": "x", "docs/y/z.md": "z", "keep.txt": "k" }),
      layer("web01", { "manifest.json": JSON.stringify({ remove: ["a.txt", "docs/"] }), "docs/new.md": "n" }),
    ]);
    expect(app.problems).toEqual([]);
    expect(sources(app)).toEqual({ "keep.txt": "_all", "docs/new.md": "web01" });
    // A manifest that only removes leaves no manifest behind.
    expect(app.files.has("manifest.json")).toBe(false);
  });

  it("refuses a remove that names nothing inherited, naming the layers before", () => {
    const app = overlayApp("fleet", "app", [
      layer("_all", { "a.txt": "a" }),
      layer("web01", { "manifest.json": JSON.stringify({ remove: ["b.txt"] }) }),
    ]);
    expect(app.problems).toEqual([
      {
        file: "fleet/web01/app/manifest.json",
        field: "remove",
        message: '"b.txt" is not given by a layer before web01 (_all): nothing to remove',
      },
    ]);
  });

  it("merges manifest.json by top-level field, later layers replacing a field whole; a lone manifest stays byte for byte", () => {
    const allManifest = `{ "systemd": { "units_enabled": ["web.service"] }, "checks": [{ "command": "true" }] }`;
    const lone = overlayApp("fleet", "app", [layer("_all", { "manifest.json": allManifest })]);
    expect(lone.files.get("manifest.json")!.oid).toBe(blobObject(Buffer.from(allManifest)).oid);
    expect(lone.objects).toEqual([]);

    const merged = overlayApp("fleet", "app", [
      layer("_all", { "manifest.json": allManifest }),
      layer("web01", { "manifest.json": JSON.stringify({ checks: [{ http: "http://127.0.0.1/" }] }) }),
    ]);
    const file = merged.files.get("manifest.json")!;
    expect(file.layer).toBe("_all + web01");
    expect(merged.objects.map((object) => object.oid)).toEqual([file.oid]);
    expect(JSON.parse(merged.objects[0]!.body.toString())).toEqual({
      systemd: { units_enabled: ["web.service"] },
      checks: [{ http: "http://127.0.0.1/" }],
    });
  });

  it("takes X.tmpl for X, to render; refuses a rendered manifest and a file given both ways in one layer", () => {
    const app = overlayApp("fleet", "app", [
      layer("_all", { "site.conf.tmpl": "server {{ host.name }}", "a.txt": "a" }),
      layer("web01", { "a.txt.tmpl": "{{ vars.a }}" }),
    ]);
    expect(app.problems).toEqual([]);
    expect(app.files.get("site.conf")).toMatchObject({ layer: "_all", template: "site.conf.tmpl" });
    expect(app.files.get("a.txt")).toMatchObject({ layer: "web01", template: "a.txt.tmpl" });

    const bad = overlayApp("fleet", "app", [layer("web01", { "manifest.json.tmpl": "{}", "x.conf": "1", "x.conf.tmpl": "2" })]);
    expect(bad.problems.map((problem) => problem.file)).toEqual(["fleet/web01/app/manifest.json.tmpl", "fleet/web01/app/x.conf.tmpl"]);
  });
});
