import js from "@eslint/js";
import tseslint from "typescript-eslint";

/**
 * The layers of src/ (README, "Layout"): the other folders of src/ each folder
 * may import. core/ is pure and imports nothing; config/ imports core/ only;
 * the adapters around them import each other only as listed here; cli/, the
 * top, may import anything. web/ imports only types (erased at run time)
 * from queue/: see MORE_PATTERNS.
 */
const LAYERS = {
  core: [],
  config: ["core"],
  git: ["core", "config"],
  store: ["core", "config", "git"],
  secrets: ["core", "git"],
  remote: ["core", "config", "git", "secrets"],
  rollout: ["core", "config", "remote"],
  pipeline: ["core", "config", "git", "store", "remote", "rollout", "secrets"],
  queue: ["core", "config"],
  github: ["core", "config"],
  http: ["core", "config", "queue"],
  web: ["core", "config", "git", "store", "pipeline", "queue"],
  operator: ["core", "config", "git", "store", "remote", "rollout", "pipeline", "queue", "github", "http", "web", "secrets"],
};

/** Node modules that reach out of the process: files, processes, the network, the machine. */
const NODE_IO = "fs|fs/promises|child_process|net|http|https|http2|tls|dgram|dns|os|worker_threads|cluster";
/** Packages that reach hosts, git remotes, Redis, GitHub, logs, metrics or the command line. */
const ADAPTER_PACKAGES = "ssh2|isomorphic-git|bullmq|ioredis|@octokit|pino|prom-client|commander|bottleneck";
const nodeModules = (names) => `^(node:)?(${names})$`;
const packages = (names) => `^(${names})(/|$)`;
const engine = (folder) => [
  {
    regex: packages("bullmq|ioredis|@octokit|prom-client|commander"),
    message: `${folder}/ is the deployment engine: the service side (queues, GitHub, metrics, the CLI) calls it, never the other way.`,
  },
];

/** What else each folder must not import: packages, and web/'s runtime imports from queue/. */
const MORE_PATTERNS = {
  core: [
    { regex: nodeModules(NODE_IO), message: "core/ is pure: do the I/O in an adapter and hand the core its result." },
    {
      regex: packages(`${ADAPTER_PACKAGES}|zod|yaml`),
      message: "core/ is pure: no adapter packages, and schemas and parsing belong in config/.",
    },
  ],
  config: [
    // Reading the settings file is config/'s one I/O.
    {
      regex: nodeModules(NODE_IO.replace("fs|fs/promises|", "")),
      message: "config/ is schemas and loaders: it reads files, nothing else outside the process.",
    },
    { regex: packages(ADAPTER_PACKAGES), message: "config/ is schemas and loaders: no adapter packages." },
  ],
  git: engine("git"),
  secrets: engine("secrets"),
  store: engine("store"),
  remote: engine("remote"),
  rollout: engine("rollout"),
  pipeline: engine("pipeline"),
  web: [
    {
      regex: "^\\.\\./queue/",
      allowTypeImports: true,
      message: "web/ takes the queues it reads as a parameter: import types only from queue/ (`import type`), or BullMQ comes with them.",
    },
    { regex: packages("bullmq|ioredis"), allowTypeImports: true, message: "web/ takes the queues it reads as a parameter: types only." },
    { regex: packages("ssh2|@octokit|commander"), message: "web/ only reads: it never contacts a host or GitHub." },
  ],
};

/** One `no-restricted-imports` per folder of src/: an import that leaves the folder must go to a folder it may import, and to no package it must not. */
const layerRules = Object.entries(LAYERS).map(([folder, may]) => ({
  files: [`src/${folder}/**/*.ts`],
  rules: {
    "@typescript-eslint/no-restricted-imports": [
      "error",
      {
        patterns: [
          {
            regex: `^\\.\\./(?!(${[folder, ...may].join("|")})/)`,
            message: `src/${folder}/ may import ${may.length > 0 ? may.map((name) => `${name}/`).join(", ") : "nothing outside itself"}: see "Layout" in the README.`,
          },
          ...(MORE_PATTERNS[folder] ?? []),
        ],
      },
    ],
  },
}));

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "coverage/", "test/artifacts/"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: {
          allowDefaultProject: [
            "eslint.config.js",
            "bin/*.js",
            "test/bed/forge/post-receive.mjs",
            "test/helpers/import-log.mjs",
            "test/helpers/import-log-hooks.mjs",
          ],
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      eqeqeq: ["error", "always"],
    },
  },
  ...layerRules,
  {
    files: ["**/*.js", "**/*.mjs"],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { globals: { process: "readonly", console: "readonly", fetch: "readonly" } },
  },
);
