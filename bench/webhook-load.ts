import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import autocannon from "autocannon";

/**
 * The load tool, in a process of its own: POSTs one signed push payload to a
 * URL for a while, each request with a delivery id of its own (a redelivery
 * would be a duplicate, not work). Prints autocannon's result as JSON.
 * Usage: webhook-load.ts URL PAYLOAD_FILE SIGNATURE SECONDS CONNECTIONS
 */
const [url, payloadFile, signature, seconds, connections] = process.argv.slice(2);
const body = readFileSync(payloadFile!, "utf8");
const result = await autocannon({
  url: url!,
  method: "POST",
  duration: Number(seconds),
  connections: Number(connections),
  headers: { "content-type": "application/json", "x-github-event": "push", "x-github-hook-id": "1", "x-hub-signature-256": signature! },
  body,
  requests: [{ setupRequest: (request) => ({ ...request, headers: { ...request.headers, "x-github-delivery": randomUUID() } }) }],
});
process.stdout.write(
  JSON.stringify({
    requests: result.requests,
    latency: result.latency,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodeStats: result.statusCodeStats,
  }),
);
