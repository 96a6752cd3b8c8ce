import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cliReportingSettings, loadSettings, operatorSettings } from "../../src/config/settings.js";
import { tidemark } from "../helpers/run-cli.js";

describe("loadSettings", () => {
  const dir = mkdtempSync(join(tmpdir(), "tidemark-settings-"));
  const file = join(dir, "tidemark.yml");
  writeFileSync(file, "repo: http://127.0.0.1:1/from-file.git\nstore: /file/store.git\nmirrors: /file/mirrors\n");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("takes flags over environment variables over the config file", () => {
    const env = { TIDEMARK_CONFIG: file, TIDEMARK_STORE: "/env/store.git" };
    expect(loadSettings({ repo: "http://127.0.0.1:1/from-flag.git" }, env)).toEqual({
      repo: "http://127.0.0.1:1/from-flag.git",
      store: "/env/store.git",
      mirrors: "/file/mirrors",
    });
  });

  it("defaults the store and mirrors under .tidemark", () => {
    expect(loadSettings({}, {})).toEqual({ store: ".tidemark/store.git", mirrors: ".tidemark/mirrors" });
  });

  it("refuses a config file with an unknown setting, naming it", () => {
    writeFileSync(join(dir, "bad.yml"), "repository: x\n");
    expect(() => loadSettings({ config: join(dir, "bad.yml") }, {})).toThrow(
      /invalid settings:\n {2}\(top level\): Unrecognized key: "repository"/,
    );
  });

  it("reads the operator's settings: a comma-separated secret list, numbers, and defaults for serve", () => {
    const settings = operatorSettings(
      loadSettings(
        { repo: "http://127.0.0.1:1/fleet.git", redis: "redis://:pw@127.0.0.1:6379/0", pollInterval: "15" },
        { TIDEMARK_WEBHOOK_SECRET: "old, new", TIDEMARK_SSH_KEY: "/k" },
      ),
      "serve",
    );
    expect(settings).toMatchObject({
      webhookSecrets: ["old", "new"],
      pollInterval: 15,
      listen: "127.0.0.1:8080",
      settle: 1,
      takeoverAfter: 30,
      shutdownTimeout: 60,
    });
    expect(
      operatorSettings(loadSettings({ repo: "http://x/r.git", redis: "redis://h" }, { TIDEMARK_SSH_KEY: "/k" }), "worker").listen,
    ).toBeUndefined();
  });

  it("reads GitHub reporting from its contract variables, with defaults, and wants a whole App or a token", () => {
    const base = { repo: "http://127.0.0.1:1/acme/fleet.git", redis: "redis://127.0.0.1:6379" };
    const env = {
      TIDEMARK_SSH_KEY: "/k",
      TIDEMARK_GITHUB_TOKEN: "ghp_0123456789abcdef0123",
      TIDEMARK_GITHUB_REPO: "acme/fleet",
      TIDEMARK_PUBLIC_URL: "https://tidemark.example.com",
      TIDEMARK_HOST_STATUSES: "false",
    };
    expect(operatorSettings(loadSettings(base, env), "worker")).toMatchObject({
      githubToken: env.TIDEMARK_GITHUB_TOKEN,
      githubRepo: "acme/fleet",
      githubApiUrl: "https://api.github.com",
      publicUrl: env.TIDEMARK_PUBLIC_URL,
      hostStatuses: false,
      hostStatusLimit: 20,
      githubDeployments: true,
    });
    expect(() => operatorSettings(loadSettings(base, { TIDEMARK_SSH_KEY: "/k", TIDEMARK_GITHUB_APP_ID: "12" }), "worker")).toThrow(
      /an App needs all three of githubAppId, githubAppKey and githubAppInstallation/,
    );
    expect(() =>
      operatorSettings(
        loadSettings(base, {
          ...env,
          TIDEMARK_GITHUB_APP_ID: "12",
          TIDEMARK_GITHUB_APP_KEY: "/app.pem",
          TIDEMARK_GITHUB_APP_INSTALLATION: "3",
        }),
        "worker",
      ),
    ).toThrow(/give a token or an App, not both/);
    expect(() => loadSettings(base, { TIDEMARK_GITHUB_REPO: "not a repo" })).toThrow(
      /githubRepo: githubRepo is owner\/name \(TIDEMARK_GITHUB_REPO or githubRepo in the config file\)/,
    );
  });

  it("gives tidemark deploy and rollback serve's GitHub settings, or none without a token or App", () => {
    const base = { repo: "http://127.0.0.1:1/acme/fleet.git" };
    expect(cliReportingSettings(loadSettings(base, {}))).toBeUndefined();
    expect(
      cliReportingSettings(
        loadSettings(base, {
          TIDEMARK_GITHUB_TOKEN: "ghp_0123456789abcdef0123",
          TIDEMARK_GITHUB_REPORT_TIMEOUT: "5",
          TIDEMARK_HOST_STATUS_LIMIT: "3",
        }),
      ),
    ).toMatchObject({
      githubApiUrl: "https://api.github.com",
      githubReportTimeout: 5,
      hostStatuses: true,
      hostStatusLimit: 3,
      githubDeployments: true,
    });
    expect(cliReportingSettings(loadSettings(base, { TIDEMARK_GITHUB_TOKEN: "ghp_0123456789abcdef0123" }))?.githubReportTimeout).toBe(30);
    expect(() => cliReportingSettings(loadSettings(base, { TIDEMARK_GITHUB_APP_ID: "12" }))).toThrow(
      /cannot report to GitHub:\n {2}githubApp: an App needs all three/,
    );
  });

  it("refuses to start serve without what it needs, one line per problem, and never echoes a secret", async () => {
    const missing = await tidemark(["serve"], {});
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(
      "cannot start serve (SETTINGS_INVALID):\n  repo: missing (--repo or TIDEMARK_REPO)\n  redis: missing (--redis or TIDEMARK_REDIS_URL)\n  sshKey: missing, and no agent at SSH_AUTH_SOCK (--ssh-key or TIDEMARK_SSH_KEY)\n  hint: ",
    );
    const malformed = await tidemark(["serve", "--redis", "http://127.0.0.1:6379", "--listen", "8080", "--poll-interval", "soon"], {
      TIDEMARK_WEBHOOK_SECRET: ",",
      TIDEMARK_REPO: "http://x/r.git",
    });
    expect(malformed.code).toBe(1);
    expect(malformed.stderr.split("\n").filter((line) => /^ {2}\w+: /.test(line) && !line.startsWith("  hint:"))).toEqual([
      "  listen: listen is HOST:PORT, e.g. 127.0.0.1:8080 (--listen or TIDEMARK_LISTEN)",
      "  redis: redis is a redis:// or rediss:// (TLS) URL, e.g. redis://:password@127.0.0.1:6379/0 (--redis or TIDEMARK_REDIS_URL)",
      expect.stringMatching(
        /^ {2}webhookSecrets: .* \(TIDEMARK_WEBHOOK_SECRET \(comma-separated\) or webhookSecrets in the config file\)$/,
      ),
      "  pollInterval: pollInterval is a number of seconds (--poll-interval or TIDEMARK_POLL_INTERVAL)",
    ]);
    const nothingToDo = await tidemark(["serve", "--poll-interval", "0"], {
      TIDEMARK_REPO: "http://x/r.git",
      TIDEMARK_REDIS_URL: "redis://h",
      TIDEMARK_SSH_KEY: "/k",
    });
    expect(nothingToDo.stderr).toMatch(/webhookSecrets: missing, and polling is off: nothing would ever deploy/);
    const secret = await tidemark(["serve", "--listen", "nope"], {
      TIDEMARK_WEBHOOK_SECRET: "s3cr3t-value",
      TIDEMARK_REDIS_URL: "redis://:p4ssw0rd@h",
    });
    expect(secret.stderr).not.toMatch(/s3cr3t-value|p4ssw0rd/);
  });
});
