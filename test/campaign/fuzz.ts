import { createHmac, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import fc from "fast-check";
import { Redis } from "ioredis";
import { MAX_WEBHOOK_BYTES } from "../../src/http/webhook.js";
import { TestBed } from "../bed/bed.js";
import { waitFor } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import {
  configTarget,
  expectedTreeProblems,
  fuzzTarget,
  manifestTarget,
  treeTarget,
  validateTree,
  type FuzzOutcome,
  type FuzzTarget,
  type TreeCase,
  type Violation,
} from "../helpers/fuzz.js";
import { operatorEnv } from "../helpers/host-shell.js";
import { OperatorProcess } from "../helpers/operator-process.js";
import { ms } from "../helpers/report.js";
import type { Scenario } from "./scenario.js";

/** Inputs per target: a few thousand each, a few minutes in all on a shared 2-core machine; TIDEMARK_FUZZ_RUNS sets them all (a quick look). */
const RUNS_EACH = process.env.TIDEMARK_FUZZ_RUNS ? Number(process.env.TIDEMARK_FUZZ_RUNS) : undefined;
const RUNS = { webhooks: RUNS_EACH ?? 5000, config: RUNS_EACH ?? 5000, manifest: RUNS_EACH ?? 3000, trees: RUNS_EACH ?? 5000 };
const OLD_SECRET = "the-secret-being-rotated-out";
const VALID_CONFIG =
  "environments:\n  staging: { track: { branch: main }, tree: clusters/staging }\nhosts:\n  web01: { address: 127.0.0.1, port: 9, hostKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKV33voDPmQ/pY/7wM2OQaOgvO/I2qHCjnZC4ZXBvAaM' }\n";

/**
 * Bad input, everywhere a user or the internet can put it: fast-check over
 * webhook deliveries sent to a real `tidemark serve` (bodies, headers,
 * signatures, content lengths), and over tidemark.yaml, manifest.json and
 * tree names through the validation `tidemark validate` runs. Never a crash,
 * never a job from a body not validly signed, always an error that names the
 * problem. `TIDEMARK_FUZZ_SEED` replays a run.
 */
const fuzz: Scenario = async (log) => {
  const seed = Number(process.env.TIDEMARK_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
  log(`seed ${seed} (TIDEMARK_FUZZ_SEED=${seed} replays this run)`);
  const findings: string[] = [];
  const figures: Array<[string, string]> = [["seed", String(seed)]];
  // Across targets: inputs that made a check throw (validation itself crashed), and problems or answers that do not say what is wrong.
  const tally = { threw: 0, unnamed: 0 };
  const record = (outcome: FuzzOutcome, took: number) => {
    const broken = [...outcome.violations.values()].reduce((sum, seen) => sum + seen.count, 0);
    for (const [kind, seen] of outcome.violations) {
      if (kind.startsWith("the check threw")) tally.threw += seen.count;
      if (/does not name|does not say|a JavaScript error|no problem names/.test(kind)) tally.unnamed += seen.count;
    }
    figures.push([`${outcome.target}: inputs / violations`, `${outcome.runs} in ${ms(took)} / ${broken}`]);
    for (const [kind, seen] of outcome.violations)
      findings.push(`${outcome.target}: ${kind} (${seen.count} of ${outcome.runs} inputs); smallest input: ${seen.example}`);
    log(
      `${outcome.target}: ${outcome.runs} inputs in ${ms(took)}, ${outcome.violations.size === 0 ? "no violation" : [...outcome.violations].map(([kind, seen]) => `${seen.count}× ${kind}`).join("; ")}`,
    );
  };

  // The pure targets first: what `tidemark validate` checks, on trees in memory; accepted names are also written to a real file system.
  const onDisk = mkdtempSync(join(tmpdir(), "tidemark-fuzz-names-"));
  try {
    for (const [target, runs] of [
      [configTarget, RUNS.config],
      [manifestTarget, RUNS.manifest],
      [treesOnDisk(onDisk), RUNS.trees],
    ] as Array<[FuzzTarget<unknown>, number]>) {
      const started = Date.now();
      record(await fuzzTarget(target, seed, runs), Date.now() - started);
    }
  } finally {
    rmSync(onDisk, { recursive: true, force: true });
  }

  const bed = await TestBed.up({ redis: true, forge: true });
  const operator = operatorEnv(bed);
  const redis = new Redis(bed.redis!.url, { maxRetriesPerRequest: null });
  let work: WorkRepo | undefined;
  const counts = { deployments: 0, duplicated: 0 };
  try {
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    await work.commit({ "tidemark.yaml": VALID_CONFIG, "clusters/staging/web01/app/version": "1\n" }, "one");
    await work.push("main");
    // A host nothing listens on: a deployment ends unreachable at once. Two secrets, as during a rotation.
    const serve = await OperatorProcess.start("serve", {
      ...operator.env,
      TIDEMARK_REDIS_URL: bed.redis!.url,
      TIDEMARK_WEBHOOK_SECRET: `${OLD_SECRET},${bed.webhookSecret}`,
      TIDEMARK_LISTEN: "127.0.0.1:0",
      TIDEMARK_POLL_INTERVAL: "0",
      TIDEMARK_SETTLE: "0.1",
    });
    let crashed: string | undefined;
    let stopping = false;
    void serve.exited.then(
      ({ code, signal }) => (crashed ??= stopping ? undefined : `tidemark serve exited (code ${String(code)}, signal ${String(signal)})`),
    );
    const model = new WebhookModel(
      serve.url,
      bed.forge!.cloneUrl(bed.forgeRepo),
      bed.forgeRepo,
      [OLD_SECRET, bed.webhookSecret],
      () => crashed,
    );
    log(`bed ${bed.id} up; tidemark serve at ${serve.url}; sending ${RUNS.webhooks} deliveries`);

    const started = Date.now();
    record(await fuzzTarget(model.target(), seed, RUNS.webhooks, 20_000, () => model.snapshot()), Date.now() - started);

    // The operator's page takes names from the URL: ones every JavaScript object has are no environment either.
    const pages: string[] = [];
    for (const path of [
      "/environments/constructor",
      "/environments/__proto__",
      "/environments/toString",
      "/deployments/constructor",
      `/plans/constructor/${"a".repeat(40)}`,
      "/environments/%00",
      "/environments/..%2f..",
      "/environments/%E0%A4%A",
    ]) {
      const response = await fetch(`${serve.url}${path}`).catch(() => undefined);
      const text = (await response?.text()) ?? "";
      pages.push(`${path}: ${response?.status ?? "no answer"}`);
      if (!response || response.status >= 500 || (response.status >= 400 && text.trim() === ""))
        findings.push(`the page answered ${response?.status ?? "nothing"} to GET ${path}: ${text.slice(0, 200)}`);
    }
    figures.push(["the page: odd names in the URL", pages.join(", ")]);

    // Bad tidemark.yaml pushed for real: the intake reads it at each push and must refuse it by name, and live.
    const badConfigs: Array<[string, Record<string, string>, RegExp]> = [
      ["nested 300 levels deep", { "tidemark.yaml": `environments: ${"[".repeat(300)}${"]".repeat(300)}\n` }, /nested more than/],
      [
        "a billion laughs",
        {
          "tidemark.yaml": `a: &a [x, x, x, x, x, x, x, x, x, x]\n${Array.from(
            { length: 9 },
            (_, i) =>
              `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10)
                .fill(`*${String.fromCharCode(97 + i)}`)
                .join(", ")}]`,
          ).join("\n")}\n`,
        },
        /Excessive alias count/,
      ],
      [
        "an environment whose host is `constructor`",
        { "tidemark.yaml": VALID_CONFIG.replace("tree: clusters/staging }", "tree: clusters/staging, hosts: [constructor] }") },
        /host constructor is not in the inventory/,
      ],
      [
        "a tree directory named `toString`",
        { "tidemark.yaml": VALID_CONFIG, "clusters/staging/toString/app/version": "1\n" },
        /clusters\/staging\/toString.*not in the inventory/,
      ],
    ];
    for (const [what, files, named] of badConfigs) {
      const since = serve.lines.length;
      await work.commit(files, what);
      await work.push("main");
      model.mainCommits++;
      for (let i = 0; i < 2; i++)
        for (const violation of await model.sendValidPush("refs/heads/main", await work.head()))
          findings.push(`the push of a tidemark.yaml with ${what}: ${violation.kind}: ${violation.detail}`);
      const said = await waitFor(
        `tidemark serve to refuse ${what}`,
        () => serve.lines.slice(since).find((line) => named.test(JSON.stringify(line))),
        { timeoutMs: 60_000, intervalMs: 100 },
      ).catch(() => undefined);
      if (!said)
        findings.push(`a pushed tidemark.yaml with ${what}: tidemark serve never said ${String(named)}${crashed ? ` (${crashed})` : ""}`);
      for (const violation of await model.healthy(`after a pushed tidemark.yaml with ${what}`)) findings.push(violation.detail);
      const text = said ? (typeof said.error === "string" ? said.error : said.msg) : "";
      log(
        `pushed ${what}: ${
          said
            ? `refused: ${
                text
                  .split("\n")
                  .find((line) => named.test(line))
                  ?.trim() ?? said.msg
              }`
            : "NOT refused"
        }`,
      );
      if (files["clusters/staging/toString/app/version"])
        await work.commit({ "clusters/staging/toString/app/version": null }, "remove toString");
    }
    await work.commit({ "tidemark.yaml": VALID_CONFIG }, "valid again");
    await work.push("main");
    model.mainCommits++;
    for (const violation of await model.sendValidPush("refs/heads/main", await work.head()))
      findings.push(`the push of a valid tidemark.yaml again: ${violation.kind}: ${violation.detail}`);

    // Let the workers take in every hint: then what Redis holds is final.
    await waitFor(
      "the refs queue to drain",
      async () => {
        const lengths = await redis
          .multi()
          .llen("tidemark:refs:wait")
          .zcard("tidemark:refs:prioritized")
          .llen("tidemark:refs:active")
          .zcard("tidemark:refs:delayed")
          .exec();
        return lengths?.every(([, length]) => length === 0) ?? false;
      },
      { timeoutMs: 180_000, intervalMs: 500 },
    ).catch((error: unknown) => findings.push(`the refs queue did not drain: ${String(error)}`));
    for (const violation of await model.healthy("at the end")) findings.push(violation.detail);

    const jobs = Number((await redis.get("tidemark:refs:id")) ?? 0);
    const deployJobs = Number((await redis.get("tidemark:deploy.staging:id")) ?? 0);
    const metrics = await (await fetch(`${serve.url}/metrics`)).text();
    const metric = (result: string) =>
      Number(new RegExp(`^tidemark_webhook_deliveries_total\\{result="${result}"\\} (\\d+)$`, "m").exec(metrics)?.[1] ?? 0);
    const queuedLines = serve.logs((line) => line.msg === "webhook queued");
    const strangers = queuedLines.filter((line) => !model.queuedDeliveries.has(`${String(line.delivery)}`));
    counts.deployments = model.expectedQueued;
    counts.duplicated = Math.max(0, jobs - model.expectedQueued);
    if (jobs !== model.expectedQueued)
      findings.push(`refs jobs in Redis: ${jobs}, validly signed relevant pushes sent: ${model.expectedQueued}`);
    if (metric("queued") !== model.expectedQueued)
      findings.push(
        `tidemark_webhook_deliveries_total{result="queued"} is ${metric("queued")}, validly signed relevant pushes sent: ${model.expectedQueued}`,
      );
    if (strangers.length > 0)
      findings.push(
        `jobs queued for deliveries that were not validly signed relevant pushes: ${strangers
          .slice(0, 5)
          .map((line) => JSON.stringify(line))
          .join("; ")}`,
      );
    if (deployJobs > model.mainCommits) findings.push(`${deployJobs} deployment requests for ${model.mainCommits} commits pushed to main`);
    if (model.unsignedJobs > 0) findings.push(`${model.unsignedJobs} deliveries not validly signed were answered "queued"`);

    figures.push(
      [
        "webhooks: validly signed relevant deliveries sent (pushes, pull requests) / refs jobs in Redis / queued (metric)",
        `${model.expectedQueued} / ${jobs} / ${metric("queued")}`,
      ],
      ["webhooks: deployment requests (deploy.staging jobs) / distinct commits pushed to main", `${deployJobs} / ${model.mainCommits}`],
      [
        "webhooks: generated deliveries not validly signed / of them answered queued",
        `${model.generated.unsigned} / ${model.generated.unsignedJobs}`,
      ],
      [
        "errors that do not name the problem (webhook answers to generated deliveries; config problems)",
        `${model.generated.unnamed}; ${tally.unnamed}`,
      ],
      [
        "webhooks: answers to the generated deliveries by status",
        [...model.generated.statuses]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([status, count]) => `${status}: ${count}`)
          .join(", "),
      ],
      ["webhooks: deliveries sent in all (generated, shrinking, the pushes of the bad configs)", String(model.sentCount)],
      [
        "webhooks: answers by result, every delivery (metric)",
        ["queued", "duplicate", "ping", "ignored", "unauthorized", "too-large", "not-json", "malformed", "unavailable"]
          .map((result) => `${result}: ${metric(result)}`)
          .join(", "),
      ],
      ["crashes (serve exited; /healthz not 200; validation or a check threw)", `${crashed ? 1 : 0}; ${model.crashes}; ${tally.threw}`],
    );
    stopping = true;
    const stopped = await serve.stop(30_000);
    if (stopped.code !== 0 && !crashed) findings.push(`tidemark serve did not stop cleanly: ${JSON.stringify(stopped)}`);
    if (crashed) findings.push(crashed);
  } finally {
    await OperatorProcess.stopAll();
    redis.disconnect();
    work?.remove();
    operator.remove();
    await bed.down();
  }

  return {
    title: "Bad input: fuzzed webhooks, tidemark.yaml, manifest.json and tree names",
    what: `fast-check (seed ${seed}) sent ${RUNS.webhooks} generated deliveries to a real \`tidemark serve\` (random and malformed bodies, JSON or not, missing and odd headers, wrong secrets, bodies altered after signing, odd content lengths, signed pushes for other repositories and refs), asked the operator's page for environments named \`constructor\` and the like, pushed four bad tidemark.yaml files for the operator to read, and put ${RUNS.config} tidemark.yaml, ${RUNS.manifest} manifest.json and ${RUNS.trees} trees with odd names through the validation \`tidemark validate\` runs. Checked: serve never exits and /healthz stays 200; a job only for a validly signed push to the source repo, exactly one each; every error answer and every problem names what is wrong (and its file); valid input stays accepted.`,
    deployments: counts.deployments,
    lost: 0,
    duplicated: counts.duplicated,
    halfSwitched: 0,
    finalStatusMs: null,
    figures,
    findings,
  };
};

export default fuzz;

/** The tree target, and every name it accepts written to a real file system: an accepted name that Linux refuses would fail on the host. */
function treesOnDisk(root: string): FuzzTarget<TreeCase> {
  let n = 0;
  return {
    ...treeTarget,
    check: (input) => {
      const found = treeTarget.check(input) as Violation[];
      const refused = new Set(validateTree(input.leaves).map((problem) => problem.file));
      const expected = expectedTreeProblems(input.leaves);
      const dir = join(root, String(n++));
      try {
        for (const leaf of input.leaves) {
          const [hostName, app, ...rest] = leaf.path;
          const paths = [`clusters/staging/${hostName}`, `clusters/staging/${hostName}/${app}`, `clusters/staging/${leaf.path.join("/")}`];
          if (app === undefined || rest.length === 0 || paths.some((path) => refused.has(path) || expected.has(path))) continue;
          const file = join(dir, app, ...rest);
          try {
            mkdirSync(dirname(file), { recursive: true });
            writeFileSync(file, leaf.content);
          } catch (error) {
            found.push({
              kind: "an accepted name that a Linux file system refuses",
              detail: `${JSON.stringify([app, ...rest])}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
            });
          }
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      return found;
    },
  };
}

// ---------------------------------------------------------------- webhooks

type Signing =
  "right" | "old-secret" | "wrong-secret" | "other-body" | "altered" | "garbage" | "missing" | "empty" | "sha1" | "twice" | "upper-case";
type Length = "exact" | "chunked" | "declared-huge" | "short" | "long" | "none" | "invalid" | "both";
type Payload =
  | { kind: "push"; ref: string; after: string; deleted: boolean; repo: RepoSpelling }
  | { kind: "push-broken"; field: "ref" | "after" | "deleted" | "repository"; value: unknown }
  | { kind: "pull_request"; action: string; repo: RepoSpelling }
  | { kind: "ping" }
  | { kind: "json"; value: unknown }
  | { kind: "text"; text: string }
  | { kind: "bytes"; bytes: number[] }
  | { kind: "big"; bytes: number }
  | { kind: "empty" };
/** The source repo as a push may spell it (the same repository), or another one. */
type RepoSpelling = "exact" | "upper-case" | "no-.git" | "credentials" | "trailing-slash" | "other-owner" | "other-host";
const SAME_REPO: RepoSpelling[] = ["exact", "upper-case", "no-.git", "credentials", "trailing-slash"];

/** One delivery as generated: plain data, so that fast-check prints and shrinks it. */
interface WebhookCase {
  payload: Payload;
  signing: Signing;
  alter: { at: number; xor: number };
  event: string | null;
  eventTwice: boolean;
  delivery: string | null;
  hookId: string | null;
  contentType: string | null;
  length: Length;
  /** A header line HTTP does not allow. */
  junk: string | null;
  extra: Array<[string, string]>;
}

/** Content types, and whether the media type is application/json (what the endpoint takes). */
const CONTENT_TYPES: Array<[string, boolean]> = [
  ["application/json", true],
  ["application/json; charset=utf-8", true],
  ["APPLICATION/JSON", true],
  ["application/json ;charset=x", true],
  ["application/json;", true],
  [" application/json", true],
  ["application/jsonx", false],
  ["application/x-www-form-urlencoded", false],
  ["text/plain", false],
  ["", false],
  ["json", false],
  ["application/vnd.github+json", false],
];
const JUNK_LINES = [
  "X-No-Colon",
  "X-Space : before-colon",
  "X-Ctl: a\u0001b",
  "X-Nul: a\u0000b",
  "X-Del: a\u007fb",
  "X-Fold: a\r\n folded",
  `X-Huge: ${"a".repeat(20_000)}`,
  "X-Bad\u000bName: a",
];

const hex40 = fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: 40, maxLength: 40 });
const refArb = fc.oneof(
  fc.constantFrom("refs/heads/main", "refs/heads/main", "refs/tags/production", "refs/tags/v1.0.0"),
  fc.stringMatching(/^refs\/(heads|tags)\/[a-z0-9._/-]{1,20}$/),
);
const repoArb = fc.constantFrom<RepoSpelling>(
  "exact",
  "exact",
  "exact",
  "upper-case",
  "no-.git",
  "credentials",
  "trailing-slash",
  "other-owner",
  "other-host",
);
const pushArb = fc.record({ kind: fc.constant("push" as const), ref: refArb, after: hex40, deleted: fc.boolean(), repo: repoArb });
const brokenArb = fc.oneof(
  fc.record({
    kind: fc.constant("push-broken" as const),
    field: fc.constant("ref" as const),
    value: fc.constantFrom<unknown>(undefined, "main", "refs/pull/1/head", "refs/heads/", 5, null, "refs/heads/\n"),
  }),
  fc.record({
    kind: fc.constant("push-broken" as const),
    field: fc.constant("after" as const),
    value: fc.constantFrom<unknown>(undefined, "abc", "A".repeat(40), "0".repeat(39), "0".repeat(41), 12345, null),
  }),
  fc.record({
    kind: fc.constant("push-broken" as const),
    field: fc.constant("deleted" as const),
    value: fc.constantFrom<unknown>(undefined, "false", 0, null, []),
  }),
  fc.record({
    kind: fc.constant("push-broken" as const),
    field: fc.constant("repository" as const),
    value: fc.constantFrom<unknown>(undefined, null, "acme/fleet", { full_name: 1 }, { full_name: "acme/fleet" }, []),
  }),
);
const payloadArb: fc.Arbitrary<Payload> = fc.oneof(
  { weight: 40, arbitrary: pushArb },
  { weight: 30, arbitrary: brokenArb },
  {
    weight: 10,
    arbitrary: fc.record({
      kind: fc.constant("pull_request" as const),
      action: fc.constantFrom("opened", "synchronize", "reopened", "closed", "labeled", "edited"),
      repo: repoArb,
    }),
  },
  { weight: 10, arbitrary: fc.constant({ kind: "ping" as const }) },
  { weight: 20, arbitrary: fc.record({ kind: fc.constant("json" as const), value: fc.jsonValue({ maxDepth: 4 }) }) },
  {
    weight: 20,
    arbitrary: fc.record({
      kind: fc.constant("text" as const),
      text: fc.oneof(
        fc.string({ unit: "grapheme", maxLength: 60 }),
        fc.string({ unit: "binary", maxLength: 60 }),
        fc.constantFrom("{", "[]", "null", '{"ref": ', "\uFEFF{}", "payload=%7B%7D"),
      ),
    }),
  },
  {
    weight: 10,
    arbitrary: fc.record({ kind: fc.constant("bytes" as const), bytes: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 40 }) }),
  },
  { weight: 10, arbitrary: fc.constant({ kind: "empty" as const }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("big" as const),
      bytes: fc.constantFrom(MAX_WEBHOOK_BYTES, MAX_WEBHOOK_BYTES + 1, MAX_WEBHOOK_BYTES + 4096),
    }),
  },
);
const signingArb = fc.constantFrom<Signing>(
  "right",
  "right",
  "right",
  "old-secret",
  "wrong-secret",
  "other-body",
  "altered",
  "altered",
  "garbage",
  "missing",
  "empty",
  "sha1",
  "twice",
  "upper-case",
);
const lengthArb = fc.constantFrom<Length>(
  "exact",
  "exact",
  "exact",
  "exact",
  "chunked",
  "chunked",
  "declared-huge",
  "short",
  "long",
  "none",
  "invalid",
  "both",
);
const deliveryArb = fc.oneof(
  { weight: 8, arbitrary: fc.uuid() },
  { weight: 2, arbitrary: fc.constantFrom("redelivered-1", "redelivered-2") },
  { weight: 1, arbitrary: fc.constantFrom<string | null>(null, "") },
);
const extraArb = fc.array(
  fc.tuple(
    fc.stringMatching(/^x-[a-z0-9-]{1,12}$/).filter((name) => !/^x-(github|hub)-/.test(name)),
    fc.string({ unit: fc.constantFrom(..."abcXYZ019 !#$%&'()*+,-./:;<=>?@[]^_`{|}~\t"), maxLength: 30 }),
  ),
  { maxLength: 3 },
);

/** Everything at random, each part on its own. */
const wildArb: fc.Arbitrary<WebhookCase> = fc.record({
  payload: payloadArb,
  signing: signingArb,
  alter: fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  event: fc.oneof(
    {
      weight: 6,
      arbitrary: fc.constantFrom<string | null>("push", "push", "push", "pull_request", "ping", "issues", null, "Push", " push"),
    },
    { weight: 1, arbitrary: fc.stringMatching(/^[a-z_]{1,12}$/) },
  ),
  eventTwice: fc.boolean(),
  delivery: deliveryArb,
  hookId: fc.constantFrom<string | null>("1", "1", "2", null),
  contentType: fc.oneof(
    { weight: 6, arbitrary: fc.constant<string | null>("application/json") },
    { weight: 4, arbitrary: fc.constantFrom<string | null>(...CONTENT_TYPES.map(([type]) => type), null) },
  ),
  length: lengthArb,
  junk: fc.oneof(
    { weight: 12, arbitrary: fc.constant<string | null>(null) },
    { weight: 1, arbitrary: fc.constantFrom<string | null>(...JUNK_LINES) },
  ),
  extra: extraArb,
});

const GOOD = {
  signing: "right" as Signing,
  event: "push",
  eventTwice: false,
  hookId: "1",
  contentType: "application/json",
  length: "exact" as Length,
  junk: null,
  extra: [] as Array<[string, string]>,
};

/** A delivery as GitHub sends one: a push to the source repo, signed with one of the secrets; now and then one already delivered. */
const validArb: fc.Arbitrary<WebhookCase> = fc
  .record({
    payload: pushArb.map((push) => ({ ...push, repo: SAME_REPO.includes(push.repo) ? push.repo : "exact" })),
    signing: fc.constantFrom<Signing>("right", "right", "old-secret"),
    alter: fc.constant({ at: 0, xor: 1 }),
    delivery: deliveryArb.map((delivery) => delivery || randomUUID()),
    length: fc.constantFrom<Length>("exact", "chunked"),
    contentType: fc.constantFrom<string | null>("application/json", "application/json; charset=utf-8"),
  })
  .map((parts) => ({ ...GOOD, ...parts }));

/** The same, but not validly signed: whatever the body says, no job. */
const forgedArb: fc.Arbitrary<WebhookCase> = fc
  .record({
    payload: pushArb,
    signing: fc.constantFrom<Signing>(
      "wrong-secret",
      "other-body",
      "altered",
      "altered",
      "garbage",
      "missing",
      "empty",
      "sha1",
      "twice",
      "upper-case",
    ),
    alter: fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
    delivery: fc.uuid(),
  })
  .map((parts) => ({ ...GOOD, ...parts }));

/** Validly signed, well-formed as HTTP, but the body or the event is not what GitHub sends: each must be refused or ignored by name. */
const oddSignedArb: fc.Arbitrary<WebhookCase> = fc
  .record({
    payload: payloadArb,
    event: fc.constantFrom<string | null>("push", "push", "pull_request", "ping", "issues", null),
    signing: fc.constantFrom<Signing>("right", "old-secret"),
    delivery: deliveryArb,
    length: fc.constantFrom<Length>("exact", "chunked"),
  })
  .map((parts) => ({ ...GOOD, alter: { at: 0, xor: 1 }, ...parts }));

const webhookCase: fc.Arbitrary<WebhookCase> = fc.oneof(
  { weight: 3, arbitrary: validArb },
  { weight: 3, arbitrary: forgedArb },
  { weight: 3, arbitrary: oddSignedArb },
  { weight: 5, arbitrary: wildArb },
);

/** What the endpoint must answer: one of these statuses (with this result), naming `mention` if an error. */
interface Expected {
  statuses: number[];
  result?: string;
  mention?: string;
  queued: boolean;
  /** The body is not validly signed: it must never make a job. */
  unsigned: boolean;
}

/**
 * The webhook side: builds each delivery's bytes, works out what the
 * endpoint must answer from GitHub's rules (not from the handler's code),
 * sends it over a raw socket, and compares.
 */
class WebhookModel {
  /** Deliveries answered "queued" must be exactly these, once each. */
  readonly queuedDeliveries = new Set<string>();
  /** (hook id, delivery) pairs already queued: a redelivery is a duplicate. */
  private readonly seen = new Set<string>();
  readonly statuses = new Map<string, number>();
  expectedQueued = 0;
  unsigned = 0;
  unsignedJobs = 0;
  unnamed = 0;
  crashes = 0;
  mainCommits = 1;
  private sent = 0;
  /** The counts over the generated deliveries alone, before shrinking sends more. */
  generated = { unsigned: 0, unsignedJobs: 0, unnamed: 0, statuses: new Map<string, number>() };

  constructor(
    private readonly url: string,
    private readonly cloneUrl: string,
    private readonly fullName: string,
    private readonly secrets: string[],
    private readonly crashed: () => string | undefined,
  ) {}

  get sentCount(): number {
    return this.sent;
  }

  snapshot(): void {
    this.generated = { unsigned: this.unsigned, unsignedJobs: this.unsignedJobs, unnamed: this.unnamed, statuses: new Map(this.statuses) };
  }

  target(): FuzzTarget<WebhookCase> {
    return { name: "webhooks", arbitrary: webhookCase, check: (input) => this.check(input) };
  }

  /** A real push's delivery, for the commits pushed after the fuzzing: must be queued like any other. */
  sendValidPush(ref: string, after: string): Promise<Violation[]> {
    return this.check({
      ...GOOD,
      payload: { kind: "push", ref, after, deleted: false, repo: "exact" },
      alter: { at: 0, xor: 1 },
      delivery: randomUUID(),
    });
  }

  async healthy(when: string): Promise<Violation[]> {
    const crashed = this.crashed();
    const status = crashed
      ? 0
      : await fetch(`${this.url}/healthz`).then(
          (response) => response.status,
          () => 0,
        );
    if (status === 200) return [];
    this.crashes++;
    return [{ kind: "tidemark serve is down", detail: `${when}: ${crashed ?? `/healthz answered ${status}`}` }];
  }

  private repoUrl(spelling: RepoSpelling): { full_name: string; clone_url: string } {
    const url = new URL(this.cloneUrl);
    switch (spelling) {
      case "exact":
        return { full_name: this.fullName, clone_url: this.cloneUrl };
      case "upper-case":
        // GitHub's names are case-insensitive; the suffix is always `.git`.
        return {
          full_name: this.fullName.toUpperCase(),
          clone_url: `${url.protocol}//${url.host.toUpperCase()}${url.pathname.replace(/\.git$/, "").toUpperCase()}.git`,
        };
      case "no-.git":
        return { full_name: this.fullName, clone_url: this.cloneUrl.replace(/\.git$/, "") };
      case "credentials":
        return { full_name: this.fullName, clone_url: `${url.protocol}//someone:secret@${url.host}${url.pathname}` };
      case "trailing-slash":
        return { full_name: this.fullName, clone_url: `${this.cloneUrl.replace(/\.git$/, "")}/` };
      case "other-owner":
        return { full_name: "someone/else", clone_url: `${url.protocol}//${url.host}/someone/else.git` };
      case "other-host":
        return { full_name: this.fullName, clone_url: `${url.protocol}//${url.hostname}:${Number(url.port) + 1}${url.pathname}` };
    }
  }

  private body(payload: Payload): Buffer {
    const repository = (spelling: RepoSpelling) => ({ ...this.repoUrl(spelling), html_url: "https://example.invalid/x", private: false });
    switch (payload.kind) {
      case "push":
        return Buffer.from(
          JSON.stringify({
            ref: payload.ref,
            before: "0".repeat(40),
            after: payload.after,
            created: false,
            deleted: payload.deleted,
            forced: false,
            repository: repository(payload.repo),
            pusher: { name: "someone" },
          }),
        );
      case "push-broken": {
        const push: Record<string, unknown> = {
          ref: "refs/heads/main",
          after: "a".repeat(40),
          deleted: false,
          repository: repository("exact"),
        };
        if (payload.value === undefined) delete push[payload.field];
        else push[payload.field] = payload.value;
        return Buffer.from(JSON.stringify(push));
      }
      case "pull_request":
        return Buffer.from(
          JSON.stringify({
            action: payload.action,
            number: 7,
            pull_request: {
              head: { sha: "b".repeat(40), repo: { full_name: "someone/fork" } },
              base: { ref: "main", repo: { full_name: this.fullName } },
            },
            repository: repository(payload.repo),
          }),
        );
      case "ping":
        return Buffer.from(JSON.stringify({ zen: "Keep it logically awesome.", hook_id: 1 }));
      case "json":
        return Buffer.from(JSON.stringify(payload.value) ?? "null");
      case "text":
        return Buffer.from(payload.text);
      case "bytes":
        return Buffer.from(payload.bytes);
      case "big":
        return Buffer.alloc(payload.bytes, "a");
      case "empty":
        return Buffer.alloc(0);
    }
  }

  private sign(body: Buffer, secret: string): string {
    return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
  }

  /** The body as sent and its X-Hub-Signature-256 values (none, one, or two lines). */
  private signed(input: WebhookCase, signedBody: Buffer): { body: Buffer; signatures: string[]; valid: boolean } {
    const [old, current] = this.secrets as [string, string];
    switch (input.signing) {
      case "right":
        return { body: signedBody, signatures: [this.sign(signedBody, current)], valid: true };
      case "old-secret":
        return { body: signedBody, signatures: [this.sign(signedBody, old)], valid: true };
      case "wrong-secret":
        return { body: signedBody, signatures: [this.sign(signedBody, `${current}x`)], valid: false };
      case "other-body":
        return { body: signedBody, signatures: [this.sign(Buffer.concat([signedBody, Buffer.from(" ")]), current)], valid: false };
      case "altered": {
        const body = Buffer.from(signedBody);
        if (body.length === 0) return { body: Buffer.from(" "), signatures: [this.sign(signedBody, current)], valid: false };
        const at = input.alter.at % body.length;
        body[at] = body[at]! ^ input.alter.xor;
        return { body, signatures: [this.sign(signedBody, current)], valid: false };
      }
      case "garbage":
        return { body: signedBody, signatures: [`sha256=${"0".repeat(64)}`], valid: false };
      case "missing":
        return { body: signedBody, signatures: [], valid: false };
      case "empty":
        return { body: signedBody, signatures: [""], valid: false };
      case "sha1":
        return { body: signedBody, signatures: [`sha1=${createHmac("sha1", current).update(signedBody).digest("hex")}`], valid: false };
      case "twice":
        return { body: signedBody, signatures: [this.sign(signedBody, current), this.sign(signedBody, current)], valid: false };
      case "upper-case":
        return { body: signedBody, signatures: [this.sign(signedBody, current).toUpperCase()], valid: false };
    }
  }

  /** The request's bytes, as a client would send them (or, for the odd length modes, as no client should). */
  private request(
    input: WebhookCase,
    body: Buffer,
    signatures: string[],
  ): { bytes: Buffer; halfClose: boolean; handlerBody: Buffer | null } {
    const lines = ["POST /webhooks/github HTTP/1.1", "host: 127.0.0.1", "connection: close"];
    if (input.contentType !== null) lines.push(`content-type: ${input.contentType}`);
    for (const event of input.event === null ? [] : input.eventTwice ? [input.event, input.event] : [input.event])
      lines.push(`x-github-event: ${event}`);
    if (input.delivery !== null) lines.push(`x-github-delivery: ${input.delivery}`);
    if (input.hookId !== null) lines.push(`x-github-hook-id: ${input.hookId}`);
    for (const signature of signatures) lines.push(`x-hub-signature-256: ${signature}`);
    for (const [name, value] of input.extra) lines.push(`${name}: ${value}`);
    if (input.junk !== null) lines.push(input.junk);
    let payload = body;
    let handlerBody: Buffer | null = body;
    let halfClose = false;
    switch (input.length) {
      case "exact":
        lines.push(`content-length: ${body.length}`);
        break;
      case "chunked":
        lines.push("transfer-encoding: chunked");
        payload = Buffer.concat([
          ...(body.length > 0 ? [Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from("\r\n")] : []),
          Buffer.from("0\r\n\r\n"),
        ]);
        break;
      case "declared-huge":
        lines.push(`content-length: ${MAX_WEBHOOK_BYTES + 1 + body.length}`);
        halfClose = true;
        break;
      case "short":
        lines.push(`content-length: ${Math.floor(body.length / 2)}`);
        handlerBody = body.subarray(0, Math.floor(body.length / 2));
        break;
      case "long":
        lines.push(`content-length: ${body.length + 10}`);
        halfClose = true;
        handlerBody = null;
        break;
      case "none":
        handlerBody = Buffer.alloc(0);
        break;
      case "invalid":
        lines.push(`content-length: ${["abc", "-1", `${body.length}, ${body.length}`, `+${body.length}`][body.length % 4]}`);
        handlerBody = null;
        break;
      case "both":
        lines.push(`content-length: ${body.length}`, "transfer-encoding: chunked");
        handlerBody = null;
        break;
    }
    return { bytes: Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1"), payload]), halfClose, handlerBody };
  }

  /** What the endpoint must answer to a body that reached it whole, by GitHub's rules. */
  private expect(input: WebhookCase, body: Buffer, signatures: string[], declared: number | null): Expected {
    const valid = signatures.length === 1 && this.secrets.some((secret) => this.sign(body, secret) === signatures[0]);
    const base = { queued: false, unsigned: !valid };
    if (declared !== null && declared > MAX_WEBHOOK_BYTES) return { ...base, statuses: [413], result: "too-large" };
    if (body.length > MAX_WEBHOOK_BYTES) return { ...base, statuses: [413], result: "too-large" };
    const type = CONTENT_TYPES.find(([name]) => name === input.contentType);
    if (!type?.[1]) return { ...base, statuses: [415], result: "not-json", mention: "application/json" };
    if (signatures.length === 0 || signatures[0] === "")
      return { ...base, statuses: [401], result: "unauthorized", mention: "X-Hub-Signature-256" };
    if (!valid) return { ...base, statuses: [401], result: "unauthorized", mention: "secret" };
    const event = input.event?.trim() ?? null;
    const events = input.eventTwice && event !== null ? `${event}, ${event}` : event;
    if (events === "ping") return { ...base, statuses: [200], result: "ping" };
    if (events !== "push" && events !== "pull_request")
      return { ...base, statuses: [202], result: "ignored", mention: events ?? "X-GitHub-Event" };
    if (!input.delivery) return { ...base, statuses: [400], result: "malformed", mention: "X-GitHub-Delivery" };
    let json: unknown;
    try {
      json = JSON.parse(body.toString("utf8"));
    } catch {
      return { ...base, statuses: [400], result: "malformed", mention: "JSON" };
    }
    const fieldWrong = events === "push" ? pushProblem(json) : pullRequestProblem(json);
    if (fieldWrong) return { ...base, statuses: [400], result: "malformed", mention: fieldWrong };
    const payload = json as { action?: string; repository: { clone_url: string } };
    if (events === "pull_request" && !["opened", "synchronize", "reopened"].includes(payload.action!))
      return { ...base, statuses: [202], result: "ignored", mention: payload.action };
    const spelling = input.payload.kind === "push" || input.payload.kind === "pull_request" ? input.payload.repo : undefined;
    if (!spelling || !SAME_REPO.includes(spelling))
      return { ...base, statuses: [202], result: "ignored", mention: "not to the source repo" };
    const key = `${input.hookId ?? "-"} ${input.delivery}`;
    if (this.seen.has(key)) return { ...base, statuses: [200], result: "duplicate" };
    return { ...base, statuses: [202], result: "queued", queued: true };
  }

  private async check(input: WebhookCase): Promise<Violation[]> {
    const found: Violation[] = [];
    if (this.sent++ % 50 === 0) found.push(...(await this.healthy(`before delivery ${this.sent}`)));
    if (this.crashed()) return found.length > 0 ? found : [{ kind: "tidemark serve is down", detail: this.crashed()! }];
    const signedBody = this.body(input.payload);
    const { body, signatures } = this.signed(input, signedBody);
    const { bytes, halfClose, handlerBody } = this.request(input, body, signatures);
    // What must come back: HTTP's own 400 for a request it cannot parse, else the endpoint's answer to what it read.
    const signedRight = signatures.length === 1 && this.secrets.some((secret) => this.sign(body, secret) === signatures[0]);
    const httpError: Expected = { statuses: [400, 431], queued: false, unsigned: !signedRight };
    const declared =
      input.length === "declared-huge" ? MAX_WEBHOOK_BYTES + 1 + body.length : input.length === "long" ? body.length + 10 : null;
    let expected: Expected[];
    if (input.junk !== null || input.length === "invalid" || input.length === "both") expected = [httpError];
    // A body that never ends: refused unread if it says it is too big, else HTTP's 400 when the client gives up.
    else if (input.length === "long")
      expected = [declared! > MAX_WEBHOOK_BYTES ? this.expect(input, body, signatures, declared) : httpError];
    else if (input.length === "short" || input.length === "none")
      expected = [httpError, this.expect(input, handlerBody!, signatures, null)];
    else expected = [this.expect(input, handlerBody!, signatures, declared)];
    const unsigned = expected.every((one) => one.unsigned);
    if (unsigned) this.unsigned++;

    const answer = await rawRequest(this.url, bytes, halfClose);
    const status = answer.status === 0 ? `none (${answer.error ?? "closed"})` : String(answer.status);
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
    let json: { result?: string; message?: string } | undefined;
    try {
      json = JSON.parse(answer.body) as { result?: string; message?: string };
    } catch {
      json = undefined;
    }
    const said = `${status} ${answer.body.slice(0, 300)}`;
    const wanted = expected.map((one) => `${one.statuses.join("/")}${one.result ? ` ${one.result}` : ""}`).join(" or ");
    const match = expected.find((one) => one.statuses.includes(answer.status) && (one.result === undefined || json?.result === one.result));

    if (json?.result === "queued") {
      if (unsigned) {
        this.unsignedJobs++;
        found.push({ kind: "a job from a body not validly signed", detail: `answered ${said}` });
      } else if (!match?.queued)
        found.push({ kind: "a job from a delivery that should not make one", detail: `expected ${wanted}; answered ${said}` });
      this.queuedDeliveries.add(String(input.delivery));
    }
    if (match?.queued && json?.result === "queued") {
      this.expectedQueued++;
      this.seen.add(`${input.hookId ?? "-"} ${input.delivery}`);
    }
    if (answer.status === 0) {
      // A client that broke HTTP and hung up may get no answer, and one whose body is refused unread may see the connection reset before the 413; any other must get one.
      const excused =
        (input.length === "long" && !answer.error) ||
        (expected.some((one) => one.statuses.includes(413)) && ["ECONNRESET", "EPIPE"].includes(answer.error ?? ""));
      if (!excused) found.push({ kind: "no answer", detail: `expected ${wanted}; ${said}` });
      return found;
    }
    if (!match)
      found.push({
        kind: `answered ${answer.status}${json?.result ? ` ${json.result}` : ""} where ${expected.map((one) => one.statuses.join("/")).join(" or ")} was due`,
        detail: `expected ${wanted}; answered ${said}`,
      });
    if (answer.status >= 400) {
      const message = json?.message ?? "";
      if (message.trim() === "") {
        this.unnamed++;
        found.push({ kind: `a ${answer.status} whose body does not name the problem`, detail: said });
      } else if (match?.mention && !message.toLowerCase().includes(match.mention.toLowerCase())) {
        this.unnamed++;
        found.push({
          kind: `a ${answer.status} ${json?.result ?? ""} that does not name the problem`,
          detail: `expected it to name ${JSON.stringify(match.mention)}; answered ${said}`,
        });
      }
    }
    return found;
  }
}

/** Why a body is not a push payload as GitHub sends it: the field at fault, or undefined. */
function pushProblem(json: unknown): string | undefined {
  if (!isObject(json)) return "expected object";
  if (typeof json.ref !== "string" || !/^refs\/(heads|tags)\/./.test(json.ref)) return "ref";
  if (typeof json.after !== "string" || !/^[0-9a-f]{40}$/.test(json.after)) return "after";
  if (typeof json.deleted !== "boolean") return "deleted";
  if (!isObject(json.repository)) return "repository";
  if (typeof json.repository.full_name !== "string") return "repository.full_name";
  if (typeof json.repository.clone_url !== "string") return "repository.clone_url";
  return undefined;
}

function pullRequestProblem(json: unknown): string | undefined {
  if (!isObject(json)) return "expected object";
  if (typeof json.action !== "string") return "action";
  if (typeof json.number !== "number" || !Number.isInteger(json.number) || json.number <= 0) return "number";
  const pull = json.pull_request;
  if (!isObject(pull)) return "pull_request";
  if (!isObject(pull.head) || typeof pull.head.sha !== "string" || !/^[0-9a-f]{40}$/.test(pull.head.sha)) return "pull_request.head";
  if (!isObject(pull.base) || typeof pull.base.ref !== "string" || pull.base.ref === "" || !isObject(pull.base.repo))
    return "pull_request.base";
  if (!isObject(json.repository) || typeof json.repository.full_name !== "string" || typeof json.repository.clone_url !== "string")
    return "repository";
  return undefined;
}

function isObject(value: unknown): value is Record<string, Record<string, unknown> & { [key: string]: unknown }> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Sends raw bytes and reads the answer until the server closes: the status, and the body (chunks joined). */
function rawRequest(
  base: string,
  bytes: Buffer,
  halfClose: boolean,
  timeoutMs = 10_000,
): Promise<{ status: number; body: string; error?: string }> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname);
    const chunks: Buffer[] = [];
    let error: string | undefined;
    const timer = setTimeout(() => {
      error = `no answer within ${timeoutMs} ms`;
      socket.destroy();
    }, timeoutMs);
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    // The server may close before it read everything (a 413): what it answered still counts.
    socket.on("error", (cause: NodeJS.ErrnoException) => (error ??= cause.code ?? cause.message));
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(parseResponse(Buffer.concat(chunks), error));
    });
    socket.write(bytes, () => {
      if (halfClose) socket.end();
    });
  });
}

function parseResponse(raw: Buffer, error: string | undefined): { status: number; body: string; error?: string } {
  const text = raw.toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
  if (status === 0 || end < 0) return { status: 0, body: text.slice(0, 200), ...(error ? { error } : {}) };
  const head = text.slice(0, end).toLowerCase();
  let body = raw.subarray(Buffer.byteLength(text.slice(0, end + 4), "latin1"));
  const length = /\r\ncontent-length: *(\d+)/.exec(head)?.[1];
  if (/\r\ntransfer-encoding: *chunked/.test(head)) {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const lineEnd = body.indexOf("\r\n", at);
      const size = lineEnd < 0 ? 0 : parseInt(body.subarray(at, lineEnd).toString("latin1"), 16);
      if (!size) break;
      parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
    body = Buffer.concat(parts);
  } else if (length !== undefined) body = body.subarray(0, Number(length));
  return { status, body: body.toString("utf8") };
}
