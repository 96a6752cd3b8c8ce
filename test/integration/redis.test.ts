import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TestBed } from "../bed/bed.js";
import { waitFor } from "../bed/proc.js";

describe("the test bed's private Redis", () => {
  let bed: TestBed;
  let client: Redis;

  beforeAll(async () => {
    bed = await TestBed.up({ redis: { aof: true } });
    client = new Redis(bed.redis!.url, { maxRetriesPerRequest: null, retryStrategy: () => 50 });
    client.on("error", () => undefined); // refused connections are expected while Redis is down
  });

  afterAll(async () => {
    client?.disconnect();
    await bed?.down();
  });

  it("goes down and comes back up; a client reconnects by itself and AOF keeps the data", async () => {
    const redis = bed.redis!;
    await client.set("deployment", "d-1");

    await redis.stop();
    await waitFor("the client to notice", () => client.status !== "ready");
    const pending = client.get("deployment"); // queued while Redis is down

    await redis.start();
    expect(await pending).toBe("d-1");
    expect(await client.get("deployment")).toBe("d-1");
  });

  it("survives a crash (SIGKILL) with the data AOF had flushed", async () => {
    const redis = bed.redis!;
    await client.set("after-crash", "kept");
    await redis.kill();
    await redis.start();
    await waitFor("the client to reconnect", () => client.status === "ready");
    expect(await client.get("after-crash")).toBe("kept");
  });
});
