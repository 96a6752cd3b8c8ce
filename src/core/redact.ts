/**
 * Secrets out of text before it reaches a log line, a status, a job in Redis
 * or an error: GitHub tokens by their prefixes, PEM private keys, credentials
 * in URLs and Authorization values, and every secret the operator was given.
 */
const PATTERNS: Array<[RegExp, string]> = [
  [/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g, "[redacted private key]"],
  [/\b(gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{20,})\b/g, "[redacted token]"],
  [/\b([a-z][a-z0-9+.-]*:\/\/)[^/\s@]+@/gi, "$1[redacted]@"],
  [/\b(authorization["']?\s*[:=]\s*["']?(?:token|bearer|basic)\s+)[^\s"',]+/gi, "$1[redacted]"],
];

export type Redactor = (text: string) => string;

export function redactor(secrets: ReadonlyArray<string | undefined>): Redactor {
  // Short values would blank out ordinary words; a secret that short is not one.
  const known = [...new Set(secrets.filter((secret): secret is string => secret !== undefined && secret.length >= 8))].sort(
    (a, b) => b.length - a.length,
  );
  return (text) => {
    let out = text;
    for (const secret of known) out = out.split(secret).join("[redacted]");
    for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
    return out;
  };
}

/** The same, through every string of a value (log fields, job data). */
export function redactDeep<T>(value: T, redact: Redactor): T {
  if (typeof value === "string") return redact(value) as T;
  if (Array.isArray(value)) return value.map((item: unknown) => redactDeep(item, redact)) as T;
  if (value instanceof Error) return redactDeep({ name: value.name, message: value.message, stack: value.stack }, redact) as T;
  if (value && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype)
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, redactDeep(item, redact)])) as T;
  return value;
}
