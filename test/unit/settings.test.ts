import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadSettings } from "../../src/config/settings.js";

describe("loadSettings", () => {
  const dir = mkdtempSync(join(tmpdir(), "tidemark-settings-"));
  const file = join(dir, "tidemark.yml");
  writeFileSync(file, "repo: http://127.0.0.1:1/from-file.git\nstore: /file/store.git\nmirrors: /file/mirrors\n");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("takes flags over environment variables over the config file", () => {
    const env = { TIDEMARK_CONFIG: file, TIDEMARK_STORE: "/env/store.git" };
    expect(loadSettings({ repo: "http://127.0.0.1:1/from-flag.git" }, env)).toEqual({ repo: "http://127.0.0.1:1/from-flag.git", store: "/env/store.git", mirrors: "/file/mirrors" });
  });

  it("defaults the store and mirrors under .tidemark", () => {
    expect(loadSettings({}, {})).toEqual({ store: ".tidemark/store.git", mirrors: ".tidemark/mirrors" });
  });

  it("refuses a config file with an unknown setting, naming it", () => {
    writeFileSync(join(dir, "bad.yml"), "repository: x\n");
    expect(() => loadSettings({ config: join(dir, "bad.yml") }, {})).toThrow(/invalid settings:\n {2}\(top level\): Unrecognized key: "repository"/);
  });
});
