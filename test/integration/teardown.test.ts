import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { gcBeds, listBeds, TestBed } from "../bed/bed.js";
import { findLeftovers, settledLeftovers } from "../bed/leftovers.js";
import { waitFor } from "../bed/proc.js";

describe("test bed teardown", () => {
  it("leaves no process, namespace, link, mount or cgroup after down", async () => {
    const bed = await TestBed.up({ systemdHosts: 2, lightHosts: 2, redis: true, forge: true });
    expect(await findLeftovers(bed.id)).not.toEqual([]); // the check sees a live bed
    await bed.down();
    expect(await settledLeftovers(bed.id)).toEqual([]);
  });

  it("cleans up after an owner that was killed mid-run (SIGKILL)", async () => {
    // A separate process brings a bed up and is killed before it can tear anything down.
    const script = `import { TestBed } from "./test/bed/bed.ts"; const bed = await TestBed.up({ systemdHosts: 1, lightHosts: 1, redis: true }); console.log(bed.id); setInterval(() => {}, 1000);`;
    const owner = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    owner.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const id = await waitFor("the owner to bring its bed up", () => /^[0-9a-f]{6}$/m.exec(output)?.[0], { timeoutMs: 60_000 });
    owner.kill("SIGKILL");
    await waitFor("the owner to die", () => owner.exitCode !== null || owner.signalCode !== null);
    expect(listBeds().find((bed) => bed.id === id)?.alive).toBe(false);

    expect(await gcBeds()).toContain(id);
    expect(await settledLeftovers(id)).toEqual([]);
  });
});
