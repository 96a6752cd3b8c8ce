/**
 * Ways the GitHub stand-in can misbehave on request, for fault tests: server
 * errors, primary and secondary rate limits with GitHub's headers, slowness.
 */
export type Fault =
  /** `body`: a regular expression the raw request body must match too, e.g. to fail one status context only. */
  | { kind: "status"; status: number; times: number; path?: string; body?: string }
  | { kind: "rate-limit"; resetInSeconds: number; times: number; path?: string }
  | { kind: "secondary-rate-limit"; retryAfterSeconds: number; status?: 403 | 429; times: number; path?: string }
  | { kind: "delay"; ms: number; times: number; path?: string };

export interface FaultAnswer {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

const DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api";

export class Faults {
  private faults: Fault[] = [];

  set(faults: Fault[]): void {
    this.faults = faults.map((fault) => ({ ...fault }));
  }

  /** Consumes the first fault that applies to this path (and body); a delay is awaited here and the request goes on. */
  async take(path: string, body = ""): Promise<FaultAnswer | undefined> {
    const fault = this.faults.find(
      (candidate) =>
        candidate.times > 0 &&
        (candidate.path === undefined || new RegExp(candidate.path).test(path)) &&
        (!("body" in candidate) || candidate.body === undefined || new RegExp(candidate.body).test(body)),
    );
    if (!fault) return undefined;
    fault.times--;
    switch (fault.kind) {
      case "delay":
        await new Promise((resolve) => setTimeout(resolve, fault.ms));
        return undefined;
      case "status":
        return {
          status: fault.status,
          headers: {},
          body: { message: fault.status >= 500 ? "Server Error" : "Error", documentation_url: "https://docs.github.com/rest" },
        };
      case "rate-limit":
        return {
          status: 403,
          headers: {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "5000",
            "x-ratelimit-resource": "core",
            "x-ratelimit-reset": String(Math.ceil(Date.now() / 1000) + fault.resetInSeconds),
          },
          body: { message: "API rate limit exceeded for user ID 1.", documentation_url: DOCS },
        };
      case "secondary-rate-limit":
        return {
          status: fault.status ?? 403,
          headers: { "retry-after": String(fault.retryAfterSeconds) },
          body: {
            message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            documentation_url: DOCS,
          },
        };
    }
  }
}
