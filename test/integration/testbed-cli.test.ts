import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { SshSession } from "../../src/remote/ssh-session.js";
import type { BedInfo } from "../bed/bed.js";
import { settledLeftovers } from "../bed/leftovers.js";

const exec = promisify(execFile);
const testbed = (...args: string[]) =>
  exec(process.execPath, ["--import", "tsx", "test/bed/cli.ts", ...args], { cwd: new URL("../..", import.meta.url).pathname });

describe("npm run testbed", () => {
  it("brings a bed up for a script, prints how to reach every part, and takes it all down", async () => {
    const { stdout } = await testbed("up", "--hosts", "2", "--kind", "light");
    const bed = JSON.parse(stdout) as BedInfo & { down: string };
    try {
      expect(bed.hosts.map((host) => host.name)).toEqual(["light001", "light002"]);
      expect(bed.down).toBe(`npm run testbed -- down ${bed.id}`);

      const session = await SshSession.connect(bed.hosts[0]!, { privateKey: readFileSync(bed.clientKey) });
      expect((await session.exec("echo reached")).stdout).toBe("reached\n");
      session.close();

      const redis = new Redis(bed.redis!.url);
      expect(await redis.ping()).toBe("PONG");
      redis.disconnect();

      const health = await fetch(`${bed.forge!.url}/_bed/health`);
      expect(health.status).toBe(200);
      expect(bed.forge!.webhookSecret).toMatch(/^[0-9a-f]{40}$/);
    } finally {
      await testbed("down", bed.id);
    }
    expect(await settledLeftovers(bed.id)).toEqual([]);
  });
});
