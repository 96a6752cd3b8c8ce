import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { TidemarkError } from "../core/errors.js";

/**
 * The keys an OpenSSH known_hosts file pins for a host: plain and hashed
 * (`|1|salt|hash`) names, `[host]:port` for other ports. `@revoked` lines
 * refuse a key; `@cert-authority` lines are not supported and skipped.
 */
export class KnownHosts {
  private constructor(private readonly lines: Array<{ marker?: string; patterns: string[]; key: string }>) {}

  static read(path: string): KnownHosts {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      throw new TidemarkError(
        "KNOWN_HOSTS_UNREADABLE",
        `cannot read the known_hosts file ${path}`,
        "pass --known-hosts with a readable file, or pin hostKey in the inventory",
        { cause: error },
      );
    }
    return KnownHosts.parse(text);
  }

  static parse(text: string): KnownHosts {
    const lines = text.split("\n").flatMap((raw) => {
      const words = raw.trim().split(/\s+/);
      if (words[0] === undefined || words[0] === "" || words[0].startsWith("#")) return [];
      const marker = words[0].startsWith("@") ? words.shift() : undefined;
      const [patterns = "", type, key] = words;
      return type && key ? [{ marker, patterns: patterns.split(","), key: `${type} ${key}` }] : [];
    });
    return new KnownHosts(lines);
  }

  /** The keys pinned for `address:port`, revoked ones left out. */
  keysFor(address: string, port: number): string[] {
    const name = port === 22 ? address : `[${address}]:${port}`;
    const matching = this.lines.filter((line) => line.patterns.some((pattern) => matches(pattern, name)));
    const revoked = new Set(matching.filter((line) => line.marker === "@revoked").map((line) => line.key));
    return matching.filter((line) => line.marker === undefined && !revoked.has(line.key)).map((line) => line.key);
  }
}

function matches(pattern: string, name: string): boolean {
  const hashed = /^\|1\|([^|]+)\|([^|]+)$/.exec(pattern);
  if (hashed) return createHmac("sha1", Buffer.from(hashed[1]!, "base64")).update(name).digest("base64") === hashed[2];
  return pattern === name;
}
