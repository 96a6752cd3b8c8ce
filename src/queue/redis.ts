import { readFileSync } from "node:fs";
import { Redis, type RedisOptions } from "ioredis";
import { TidemarkError } from "../core/errors.js";

/**
 * Opens connections to the operator's Redis. `rediss://` URLs use TLS (with
 * `ca`, a PEM file, for a private certificate authority); the password travels
 * in the URL and never into a log line (`redactUrl`).
 */
export function redisFactory(url: string, ca?: string): (options?: RedisOptions) => Redis {
  let tls: RedisOptions["tls"];
  if (ca) {
    try {
      tls = { ca: readFileSync(ca) };
    } catch (error) {
      throw new TidemarkError(
        "SETTINGS_INVALID",
        `cannot read the Redis CA file ${ca}`,
        "pass --redis-ca with a PEM file, or leave it out to trust the system's CAs",
        { cause: error },
      );
    }
  }
  // BullMQ's workers block on Redis: they need maxRetriesPerRequest null, and reconnect forever.
  return (options = {}) => new Redis(url, { maxRetriesPerRequest: null, ...(tls ? { tls } : {}), ...options });
}

export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    if (parsed.username && parsed.protocol.startsWith("http")) parsed.username = "***";
    return parsed.toString();
  } catch {
    return "(unparsable URL)";
  }
}

/** A warning when Redis may evict keys: BullMQ's jobs and locks would silently vanish. */
export async function evictionWarning(redis: Redis): Promise<string | undefined> {
  const reply = (await redis.config("GET", "maxmemory-policy").catch(() => [])) as string[];
  const policy = reply[1];
  if (policy === undefined) return "could not read Redis' maxmemory-policy (CONFIG GET refused); make sure it is noeviction";
  return policy === "noeviction"
    ? undefined
    : `Redis' maxmemory-policy is ${policy}: under memory pressure it may evict queued deployments and locks; set it to noeviction`;
}
