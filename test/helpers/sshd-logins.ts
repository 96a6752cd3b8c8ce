import type { TestBed } from "../bed/bed.js";
import { waitFor } from "../bed/proc.js";

/**
 * Counting SSH logins on systemd hosts of the bed, from sshd's own log: a
 * journal cursor per host before, then the `Accepted publickey` lines after it.
 * The hosts are read from outside their containers (nsenter), never over SSH.
 */
export function journalCursors(bed: TestBed, hosts: readonly string[]): Promise<string[]> {
  return Promise.all(
    hosts.map(async (host) => {
      const cursor = /^-- cursor: (.+)$/m.exec(await bed.inHost(host, ["journalctl", "-n", "0", "--show-cursor", "-q"]))?.[1];
      if (!cursor) throw new Error(`no journal cursor on ${host}`);
      return cursor;
    }),
  );
}

/**
 * Each host's logins since its cursor. A mark logged now goes through the
 * same socket as sshd's lines, after them: once the journal shows it, every
 * login before it is there too.
 */
export function sshLogins(bed: TestBed, hosts: readonly string[], from: readonly string[]): Promise<number[]> {
  return Promise.all(
    hosts.map(async (host, i) => {
      const mark = `login count mark ${Date.now()}`;
      await bed.inHost(host, ["logger", "-t", "tidemark-test", mark]);
      const lines = await waitFor(`${host}'s journal to show the mark`, async () => {
        const text = await bed.inHost(host, ["journalctl", `--after-cursor=${from[i]!}`, "-o", "cat", "-q", "--no-pager"]);
        return text.includes(mark) && text.split("\n");
      });
      return lines.filter((line) => line.startsWith("Accepted publickey ")).length;
    }),
  );
}
