import { createHmac, randomUUID } from "node:crypto";
import type { Server } from "node:http";
import { connect } from "node:net";
import fc from "fast-check";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nameProblem } from "../../src/config/config-tree.js";
import { parseManifest } from "../../src/config/manifest.js";
import { parseSourceConfig } from "../../src/config/source-config.js";
import { startHttp, stopHttp } from "../../src/http/server.js";
import { webhookHandler } from "../../src/http/webhook.js";
import type { OperatorQueues } from "../../src/queue/queues.js";
import { checkConfig, checkManifest, checkTree, configCase, manifestCase, treeCase, validateTree } from "../helpers/fuzz.js";

/** Fixed, so that the quick suite sees the same inputs every run; the campaign (`npm run campaign -- fuzz`) draws new ones. */
const SEED = 20261122;

describe("fuzzed config input (fast-check, fixed seed)", () => {
  it("tidemark.yaml: never throws; every problem names the file, the field and what is wrong; valid configs stay accepted", () => {
    fc.assert(
      fc.property(configCase, (input) => {
        expect(checkConfig(input)).toEqual([]);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("manifest.json: the same, read alone and inside its app", () => {
    fc.assert(
      fc.property(manifestCase, (input) => {
        expect(checkManifest(input)).toEqual([]);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("tree names: exactly the names that could escape, hide or not fit on a host are refused, each at its path", () => {
    fc.assert(
      fc.property(treeCase, (input) => {
        expect(checkTree(input)).toEqual([]);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});

/** What the fuzzer found, as it found it: each input once made validation throw, crash, or say nothing useful. */
describe("inputs the fuzzer found", () => {
  const problems = (text: string) => parseSourceConfig(text).problems;

  it("refuses YAML nested a thousand levels deep by name, again and again (a second parse used to abort the process)", () => {
    for (const text of [
      `${"[".repeat(1000)}${"]".repeat(1000)}`,
      `${"[".repeat(1000)}${"]".repeat(1000)}`,
      `${"- ".repeat(1000)}1\n`,
      `a: ${"{a: ".repeat(1000)}1${"}".repeat(1000)}\n`,
    ]) {
      expect(problems(text)).toEqual([
        { file: "tidemark.yaml", message: expect.stringMatching(/nested more than 64 levels deep/) as string },
      ]);
    }
  });

  it("names an alias to no anchor and a billion laughs instead of throwing", () => {
    expect(problems("environments: *nope\n")).toEqual([
      { file: "tidemark.yaml", message: expect.stringMatching(/Unresolved alias.*nope/) as string },
    ]);
    const laughs = `l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n${Array.from({ length: 9 }, (_, i) => `l${i + 1}: &l${i + 1} [${Array(10).fill(`*l${i}`).join(", ")}]`).join("\n")}\n`;
    expect(problems(laughs)).toEqual([{ file: "tidemark.yaml", message: expect.stringMatching(/Excessive alias count/) as string }]);
  });

  it("says what a host or environment name may be, not just 'Invalid key in record'", () => {
    expect(
      problems(
        'environments:\n  a:\n    track:\n      tags: v*\n    tree: _\nhosts:\n  a:\n    address: a.aa\n  "":\n    address: 192.0.2.1\n',
      ),
    ).toEqual([
      {
        file: "tidemark.yaml",
        field: "hosts.",
        message: "host names are letters, digits, '_', '.', '-' (at most 63, starting with a letter or digit)",
      },
    ]);
    expect(problems("environments:\n  -x: { track: { branch: main }, tree: a }\nhosts: {}\n")).toEqual([
      {
        file: "tidemark.yaml",
        field: "environments.-x",
        message: "environment names are letters, digits, '_', '.', '-' (at most 63, starting with a letter or digit)",
      },
    ]);
  });

  it("does not take `constructor` or `__proto__` for a host of the inventory", () => {
    expect(
      problems(
        "environments:\n  a:\n    track:\n      tags: v*\n    tree: a\n    hosts:\n      - constructor\nhosts:\n  a:\n    address: a.aa\n",
      ),
    ).toEqual([{ file: "tidemark.yaml", field: "environments.a.hosts[0]", message: "host constructor is not in the inventory (hosts:)" }]);
    expect(problems("environments: {}\nhosts:\n  __proto__: { address: 192.0.2.1 }\n")).toEqual([
      { file: "tidemark.yaml", field: "hosts.__proto__", message: expect.stringMatching(/^host names are/) as string },
    ]);
    expect(validateTree([{ path: ["toString", "a", "a"], kind: "file", content: "" }])).toEqual([
      {
        file: "clusters/staging/toString",
        message: "directory for host toString, which is not in the inventory (hosts: in tidemark.yaml)",
      },
    ]);
    // A host really named so is a host like any other.
    const { config } = parseSourceConfig("environments: {}\nhosts:\n  constructor: { address: 192.0.2.1 }\n");
    expect(config?.hosts.constructor).toMatchObject({ address: "192.0.2.1" });
  });

  it("refuses a name with a '/' inside an app (a crafted tree), and names longer than a Linux file name", () => {
    expect(validateTree([{ path: ["web01", "0", "a/b"], kind: "file", content: "" }])).toEqual([
      { file: "clusters/staging/web01/0/a/b", message: "a name that contains '/' (a crafted tree)" },
    ]);
    expect(nameProblem("a".repeat(255))).toBeUndefined();
    expect(nameProblem("a".repeat(256))).toBe("a name of 256 bytes, longer than a Linux file name can be (255)");
    expect(nameProblem("日".repeat(86))).toMatch(/258 bytes/);
  });

  it("does not drop a symlink declared at __proto__ without a word", () => {
    expect(parseManifest("m.json", '{"symlinks":{"__proto__":"a"}}').problems).toEqual([
      { file: "m.json", field: "symlinks.__proto__", message: expect.stringMatching(/absolute host path/) as string },
    ]);
  });
});

describe("webhooks and HTTP the fuzzer found answered wrong", () => {
  const SECRET = "fuzz-secret";
  let server: Server;
  let url: string;
  const recorded: string[] = [];
  // Every delivery below is refused before anything is queued: a queue call is itself a failure.
  const queues = new Proxy({}, { get: (_, name) => () => Promise.reject(new Error(`queues.${String(name)} called`)) }) as OperatorQueues;

  beforeAll(async () => {
    const webhook = webhookHandler({
      secrets: [SECRET],
      queues,
      sourceRepo: "http://127.0.0.1:1/acme/fleet.git",
      record: (result) => recorded.push(result),
    });
    ({ server, url } = await startHttp("127.0.0.1:0", {
      webhook,
      ready: () => Promise.resolve({ ok: true, checks: {} }),
      metrics: new Registry(),
      onError: () => undefined,
    }));
  });
  afterAll(() => stopHttp(server));

  /** Raw bytes in, status and body out: fetch would not send the malformed requests. */
  function raw(request: string | Buffer): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const { port, hostname } = new URL(url);
      const socket = connect(Number(port), hostname);
      const chunks: Buffer[] = [];
      socket.on("data", (chunk: Buffer) => chunks.push(chunk));
      socket.on("error", reject);
      socket.on("close", () => {
        const text = Buffer.concat(chunks).toString();
        const [head = "", body = ""] = text.split(/\r\n\r\n(.*)/s);
        // One chunk at most: the answers here are a line of JSON.
        resolve({
          status: Number(head.slice(9, 12)),
          body: /^transfer-encoding: chunked$/im.test(head) ? body.slice(body.indexOf("\r\n") + 2, body.lastIndexOf("\r\n0\r\n")) : body,
        });
      });
      socket.end(request);
    });
  }

  const signed = (body: Buffer) => {
    const head = [
      "POST /webhooks/github HTTP/1.1",
      "host: x",
      "connection: close",
      "content-type: application/json",
      "x-github-event: push",
      `x-github-delivery: ${randomUUID()}`,
      `x-hub-signature-256: sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`,
      `content-length: ${body.length}`,
    ];
    return Buffer.concat([Buffer.from(`${head.join("\r\n")}\r\n\r\n`), body]);
  };

  it("checks the signature on the raw bytes: a signed empty or non-UTF-8 body is refused for what it is, not as unsigned", async () => {
    for (const body of [Buffer.alloc(0), Buffer.from([0x7b, 0xff, 0x7d])]) {
      const answer = await raw(signed(body));
      expect(answer.status).toBe(400);
      expect(JSON.parse(answer.body)).toEqual({ result: "malformed", message: "not a push payload: invalid JSON" });
    }
  });

  it("answers a request HTTP cannot parse with a body that says what is wrong", async () => {
    const answer = await raw("POST /webhooks/github HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n{}");
    expect(answer.status).toBe(400);
    expect((JSON.parse(answer.body) as { message: string }).message).toMatch(
      /^malformed HTTP request: .*Content-Length \(HPE_INVALID_CONTENT_LENGTH\)$/,
    );
    const huge = await raw(`POST /webhooks/github HTTP/1.1\r\nhost: x\r\nx-huge: ${"a".repeat(20_000)}\r\n\r\n`);
    expect(huge.status).toBe(431);
    expect((JSON.parse(huge.body) as { message: string }).message).toMatch(/HPE_HEADER_OVERFLOW/);
  });
});
