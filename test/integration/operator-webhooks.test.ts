import { createHmac, randomUUID } from "node:crypto";
import net from "node:net";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import { waitFor } from "../bed/proc.js";
import { WorkRepo } from "../bed/work-repo.js";
import { operatorEnv } from "../helpers/host-shell.js";
import { OperatorProcess } from "../helpers/operator-process.js";

/** The webhook endpoint on its own: no hosts, so deployments do not matter; what reaches the queue does. */
describe("tidemark serve: the webhook endpoint", () => {
  let bed: TestBed;
  let work: WorkRepo;
  let operator: ReturnType<typeof operatorEnv>;
  let serve: OperatorProcess;
  let redis: Redis;
  let refs: Queue;
  const OLD_SECRET = "the-secret-being-rotated-out";

  const sign = (body: string, secret = bed.webhookSecret) => `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
  const pushJobs = async () =>
    (await refs.getJobs(["waiting", "active", "completed", "failed", "delayed"])).filter((job) => job.name === "push") as Array<{
      data: unknown;
    }>;
  const metric = async (name: string) => {
    const text = await (await fetch(`${serve.url}/metrics`)).text();
    return Number(new RegExp(`^${name.replace(/[{}"]/g, "\\$&")} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
  };

  /** POSTs like GitHub would, with whatever headers the test forges. */
  async function post(
    body: string | Buffer,
    headers: Record<string, string>,
  ): Promise<{ status: number; json: { result?: string; message?: string } }> {
    const response = await fetch(`${serve.url}/webhooks/github`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": randomUUID(),
        "x-github-hook-id": "1",
        ...headers,
      },
      body,
    });
    return { status: response.status, json: (await response.json()) as { result?: string } };
  }

  /**
   * Sends a big body over a plain socket, which, unlike fetch, lets the server
   * answer before the body is all sent. The server closes the connection
   * after its answer; a client still writing may see the close (EPIPE, a
   * reset) before it reads the answer, as any client of a refusing server
   * can: that is asked again, a few times, and the answer is what counts.
   */
  async function postLarge(bytes: number, chunked: boolean): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await postLargeOnce(bytes, chunked);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (attempt >= 3 || (code !== "EPIPE" && code !== "ECONNRESET")) throw error;
      }
    }
  }

  function postLargeOnce(bytes: number, chunked: boolean): Promise<number> {
    const url = new URL(`${serve.url}/webhooks/github`);
    const body = Buffer.alloc(bytes, "a");
    const head = [
      `POST ${url.pathname} HTTP/1.1`,
      `host: ${url.host}`,
      "content-type: application/json",
      "x-github-event: push",
      `x-hub-signature-256: ${sign(body.toString())}`,
      chunked ? "transfer-encoding: chunked" : `content-length: ${bytes}`,
      "connection: close",
      "",
      "",
    ].join("\r\n");
    return new Promise((resolve, reject) => {
      const socket = net.connect(Number(url.port), url.hostname);
      let heard = "";
      socket.on("data", (chunk: Buffer) => {
        heard += chunk.toString("latin1");
        const status = /^HTTP\/1\.1 (\d{3}) /.exec(heard);
        if (status) {
          resolve(Number(status[1]));
          socket.destroy();
        }
      });
      socket.on("error", reject);
      socket.on("close", () => reject(new Error(`the connection closed without an answer: ${JSON.stringify(heard)}`)));
      // One piece at a time, reads handled between them: once the server answered, nothing more is written into its closed connection.
      void (async () => {
        const write = (data: Buffer | string) => new Promise<void>((done) => socket.write(data, () => setImmediate(done)));
        await write(head);
        for (let offset = 0; offset < bytes && heard === "" && !socket.destroyed; offset += 64 * 1024) {
          const piece = body.subarray(offset, offset + 64 * 1024);
          await write(chunked ? Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n")]) : piece);
        }
        if (chunked && heard === "" && !socket.destroyed) await write("0\r\n\r\n");
      })();
    });
  }

  beforeAll(async () => {
    bed = await TestBed.up({ redis: { aof: true }, forge: true });
    work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
    operator = operatorEnv(bed);
    redis = new Redis(bed.redis!.url, { maxRetriesPerRequest: null, retryStrategy: () => 50 });
    redis.on("error", () => undefined); // refused while the test has Redis down
    refs = new Queue("refs", { connection: redis, prefix: "tidemark" });
    refs.on("error", () => undefined);
    // A host nothing listens on: deployments end unreachable, which does not matter here.
    await work.commit(
      {
        "tidemark.yaml":
          "environments:\n  staging: { track: { branch: main }, tree: clusters/staging }\nhosts:\n  web01: { address: 127.0.0.1, port: 9, hostKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKV33voDPmQ/pY/7wM2OQaOgvO/I2qHCjnZC4ZXBvAaM' }\n",
        "clusters/staging/web01/app/version": "1\n",
      },
      "one",
    );
    await work.push("main");
    // An operator with eviction on must say so at start.
    await redis.config("SET", "maxmemory-policy", "allkeys-lru");
    serve = await OperatorProcess.start("serve", {
      ...operator.env,
      TIDEMARK_REDIS_URL: bed.redis!.url,
      TIDEMARK_WEBHOOK_SECRET: `${OLD_SECRET},${bed.webhookSecret}`,
      TIDEMARK_LISTEN: "127.0.0.1:0",
      TIDEMARK_POLL_INTERVAL: "0",
    });
    await redis.config("SET", "maxmemory-policy", "noeviction");
    await bed.forge!.addHook(bed.forgeRepo, { url: `${serve.url}/webhooks/github`, secret: bed.webhookSecret });
  });

  afterAll(async () => {
    await OperatorProcess.stopAll();
    await refs?.close();
    redis?.disconnect();
    work?.remove();
    operator?.remove();
    await bed?.down();
  });

  it("warns at start when Redis may evict jobs", () => {
    expect(serve.logs((line) => line.level === 40 && /maxmemory-policy is allkeys-lru/.test(line.msg))).toHaveLength(1);
  });

  it("answers health and readiness", async () => {
    expect((await fetch(`${serve.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${serve.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ok: true, checks: { redis: "ok", store: "ok" } });
  });

  it("queues one push; refuses forged, altered, oversized and non-JSON deliveries; a redelivery 50 times adds nothing", async () => {
    const sha = await work.commit({ "clusters/staging/web01/app/version": "2\n" }, "two");
    await work.push("main");
    const [delivery] = await waitFor("the forge's delivery", async () => {
      const found = (await bed.forge!.deliveries()).filter((d) => (d.payload as { after?: string }).after === sha);
      return found.length > 0 ? found : undefined;
    });
    expect(delivery!.status).toBe(202);
    const body = JSON.stringify(delivery!.payload);

    // Forged: no signature, a signature made with another secret, the body altered after signing.
    expect(await post(body, {})).toMatchObject({ status: 401, json: { result: "unauthorized" } });
    expect(await post(body, { "x-hub-signature-256": sign(body, "not-the-secret") })).toMatchObject({ status: 401 });
    const altered = body.replace(sha, `${sha.slice(0, 39)}${sha.endsWith("0") ? "1" : "0"}`);
    expect(altered).not.toBe(body);
    expect(await post(altered, { "x-hub-signature-256": sign(body) })).toMatchObject({ status: 401 });
    // 2 MiB, declared and chunked: refused without being read to the end.
    expect(await postLarge(2 * 1024 * 1024, false)).toBe(413);
    expect(await postLarge(2 * 1024 * 1024, true)).toBe(413);
    // Signed, but form-encoded (a webhook set to the wrong content type).
    const form = `payload=${encodeURIComponent(body)}`;
    expect(await post(form, { "content-type": "application/x-www-form-urlencoded", "x-hub-signature-256": sign(form) })).toMatchObject({
      status: 415,
      json: { result: "not-json" },
    });
    // The real delivery again, 50 times, as GitHub's "Redeliver" sends it: same GUID, same hook.
    for (let i = 0; i < 50; i++) expect((await bed.forge!.redeliver(delivery!.guid)).status).toBe(200);

    const jobs = await pushJobs();
    expect(jobs.map((job) => job.data)).toEqual([
      { kind: "push", ref: "refs/heads/main", after: sha, deleted: false, delivery: delivery!.guid },
    ]);
    expect(await metric('tidemark_webhook_deliveries_total{result="queued"}')).toBe(1);
    expect(await metric('tidemark_webhook_deliveries_total{result="duplicate"}')).toBe(50);
    expect(await metric('tidemark_webhook_deliveries_total{result="unauthorized"}')).toBe(3);
  });

  it("answers ping with either secret during a rotation, and ignores other events and other repositories", async () => {
    const ping = JSON.stringify({ zen: "Keep it logically awesome.", hook_id: 1 });
    expect(await post(ping, { "x-github-event": "ping", "x-hub-signature-256": sign(ping, OLD_SECRET) })).toMatchObject({
      status: 200,
      json: { result: "ping" },
    });
    expect(await post(ping, { "x-github-event": "ping", "x-hub-signature-256": sign(ping) })).toMatchObject({ status: 200 });
    const issue = JSON.stringify({ action: "opened" });
    expect(await post(issue, { "x-github-event": "issues", "x-hub-signature-256": sign(issue) })).toMatchObject({
      status: 202,
      json: { result: "ignored" },
    });
    const [delivery] = (await bed.forge!.deliveries()).slice(-1);
    const elsewhere = JSON.stringify({
      ...(delivery!.payload as object),
      repository: { full_name: "someone/else", clone_url: "https://github.com/someone/else.git" },
    });
    expect(await post(elsewhere, { "x-hub-signature-256": sign(elsewhere) })).toMatchObject({
      status: 202,
      json: { result: "ignored", message: expect.stringMatching(/not to the source repo/) as string },
    });
    expect(await pushJobs()).toHaveLength(1);
  });

  it("answers 503 while Redis is down, so that the delivery can be retried, and recovers by itself", async () => {
    await bed.redis!.stop();
    const body = JSON.stringify({
      ref: "refs/heads/main",
      after: "a".repeat(40),
      deleted: false,
      repository: { full_name: bed.forgeRepo, clone_url: bed.forge!.cloneUrl(bed.forgeRepo) },
    });
    const guid = randomUUID();
    expect(await post(body, { "x-hub-signature-256": sign(body), "x-github-delivery": guid })).toMatchObject({
      status: 503,
      json: { result: "unavailable" },
    });
    const ready = await fetch(`${serve.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { checks: { redis: string } }).checks.redis).toMatch(/^unreachable/);

    await bed.redis!.start();
    await waitFor("readiness", async () => (await fetch(`${serve.url}/readyz`)).status === 200);
    // The refused delivery was not remembered: its redelivery is taken.
    expect(await post(body, { "x-hub-signature-256": sign(body), "x-github-delivery": guid })).toMatchObject({
      status: 202,
      json: { result: "queued" },
    });
    expect(await pushJobs()).toHaveLength(2);
  });
});
