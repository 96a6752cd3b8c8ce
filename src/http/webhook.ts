import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import type { OperatorQueues, PullRequestHint, PushHint } from "../queue/queues.js";
import { readLimited, send } from "./respond.js";

/** GitHub caps payloads at 25 MB, but a push that matters to Tidemark is a few KB: anything over 1 MiB is refused unread. */
export const MAX_WEBHOOK_BYTES = 1024 * 1024;

export type WebhookResult =
  "queued" | "duplicate" | "ping" | "ignored" | "unauthorized" | "too-large" | "not-json" | "malformed" | "unavailable";

const PushPayload = z.object({
  ref: z.string().regex(/^refs\/(heads|tags)\/./),
  after: z.string().regex(/^[0-9a-f]{40}$/),
  deleted: z.boolean(),
  repository: z.object({ full_name: z.string(), clone_url: z.string() }),
});

/** The pull request actions that change what a merge would deploy. */
const PLANNED_ACTIONS = ["opened", "synchronize", "reopened"];

const PullRequestPayload = z.object({
  action: z.string(),
  number: z.number().int().positive(),
  pull_request: z.object({
    head: z.object({ sha: z.string().regex(/^[0-9a-f]{40}$/), repo: z.object({ full_name: z.string() }).nullable() }),
    base: z.object({ ref: z.string().min(1), repo: z.object({ full_name: z.string() }) }),
  }),
  repository: z.object({ full_name: z.string(), clone_url: z.string() }),
});

export interface WebhookDeps {
  /** One verifier per secret: during a rotation, both the old and the new secret are accepted. */
  secrets: string[];
  queues: OperatorQueues;
  /** The source repo's URL: pushes to any other repository are ignored. */
  sourceRepo: string;
  record: (result: WebhookResult, fields: Record<string, unknown>) => void;
}

/**
 * `POST /webhooks/github`: checks size, type and signature before parsing a
 * byte, remembers the delivery so that a redelivery adds nothing, and queues
 * a hint: a push, or a pull request to preview. It answers as soon as the
 * hint is in Redis: the work happens in the workers.
 */
export function webhookHandler(deps: WebhookDeps): (request: IncomingMessage, response: ServerResponse) => Promise<void> {
  const source = repoKey(deps.sourceRepo);

  return async (request, response) => {
    const answer = (status: number, result: WebhookResult, message: string, fields: Record<string, unknown> = {}) => {
      deps.record(result, { delivery: request.headers["x-github-delivery"], event: request.headers["x-github-event"], status, ...fields });
      // Refused unread: close the connection rather than drain a body of any size.
      send(response, status, { result, message }, status === 413 ? { connection: "close" } : {});
    };
    const declared = Number(request.headers["content-length"] ?? 0);
    if (declared > MAX_WEBHOOK_BYTES)
      return answer(413, "too-large", `payloads over ${MAX_WEBHOOK_BYTES} bytes are refused`, { bytes: declared });
    const body = await readLimited(request, MAX_WEBHOOK_BYTES);
    if (body === undefined) return answer(413, "too-large", `payloads over ${MAX_WEBHOOK_BYTES} bytes are refused`);
    if (!/^application\/json\s*(;|$)/i.test(request.headers["content-type"] ?? "")) {
      return answer(415, "not-json", "set the webhook's content type to application/json");
    }
    const signature = header(request, "x-hub-signature-256");
    if (deps.secrets.length === 0)
      return answer(401, "unauthorized", "webhooks are off: the operator has no webhook secret (TIDEMARK_WEBHOOK_SECRET)");
    if (!signature)
      return answer(401, "unauthorized", "missing X-Hub-Signature-256: give the webhook a secret, the same as TIDEMARK_WEBHOOK_SECRET");
    if (!signatureMatches(deps.secrets, body, signature))
      return answer(
        401,
        "unauthorized",
        "the signature matches no webhook secret: check that the webhook's secret is one of TIDEMARK_WEBHOOK_SECRET",
      );
    const text = body.toString("utf8");

    const event = header(request, "x-github-event");
    const delivery = header(request, "x-github-delivery");
    if (event === "ping") return answer(200, "ping", "pong");
    if (event !== "push" && event !== "pull_request")
      return answer(202, "ignored", `Tidemark acts on push and pull_request events, not ${event ?? "(no X-GitHub-Event)"}`);
    if (!delivery) return answer(400, "malformed", "missing X-GitHub-Delivery");
    let hint: PushHint | PullRequestHint;
    let repository: { full_name: string; clone_url: string };
    try {
      const json: unknown = JSON.parse(text);
      if (event === "push") {
        const push = PushPayload.parse(json);
        hint = { kind: "push", ref: push.ref, after: push.after, deleted: push.deleted, delivery };
        repository = push.repository;
      } else {
        const pull = PullRequestPayload.parse(json);
        if (!PLANNED_ACTIONS.includes(pull.action))
          return answer(202, "ignored", `pull_request ${pull.action}: only ${PLANNED_ACTIONS.join(", ")} change what a merge would deploy`);
        const { head, base } = pull.pull_request;
        hint = {
          kind: "pull-request",
          number: pull.number,
          head: head.sha,
          base: base.ref,
          fork: head.repo?.full_name !== base.repo.full_name,
          delivery,
        };
        repository = pull.repository;
      }
    } catch (error) {
      return answer(
        400,
        "malformed",
        `not a ${event} payload: ${error instanceof z.ZodError ? error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; ") : "invalid JSON"}`,
      );
    }
    if (repoKey(repository.clone_url) !== source)
      return answer(202, "ignored", `${event === "push" ? "a push" : "a pull request"} to ${repository.full_name}, not to the source repo`);
    const subject = hint.kind === "push" ? { ref: hint.ref } : { pullRequest: hint.number };

    const hookId = header(request, "x-github-hook-id") ?? "-";
    try {
      if (!(await withDeadline(deps.queues.firstDelivery(hookId, delivery))))
        return answer(200, "duplicate", "this delivery was queued before", subject);
      try {
        const job = await withDeadline(deps.queues.addHint(hint));
        const what =
          hint.kind === "push" ? `${hint.ref} at ${hint.after.slice(0, 7)}` : `pull request #${hint.number} at ${hint.head.slice(0, 7)}`;
        return answer(202, "queued", `queued ${what}`, { ...subject, job });
      } catch (error) {
        await deps.queues.forgetDelivery(hookId, delivery).catch(() => undefined);
        throw error;
      }
    } catch (error) {
      return answer(503, "unavailable", "cannot queue the push: Redis is unreachable; redeliver it later, or let the poller catch up", {
        error: error instanceof Error ? error.message : String(error),
      });
    }
  };
}

/**
 * GitHub signs the bytes it sends: HMAC-SHA256 of the raw body, compared in
 * constant time, against each secret of a rotation. (Verifying the body
 * decoded as text instead refused an empty body, or one that is not UTF-8,
 * as unsigned, and named the wrong problem.)
 */
function signatureMatches(secrets: string[], body: Buffer, signature: string): boolean {
  const given = Buffer.from(signature);
  const matches = secrets.map((secret) => {
    const expected = Buffer.from(`sha256=${createHmac("sha256", secret).update(body).digest("hex")}`);
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
  return matches.includes(true);
}

/** Redis answers in a millisecond or is in trouble: GitHub waits 10 s for an answer, the handler never more than 2. */
function withDeadline<T>(work: Promise<T>, ms = 2000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>(
    (_, reject) => (timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms)),
  );
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

function header(request: IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** host/owner/name, case-insensitive, without credentials or `.git`: how a clone URL names its repository. */
export function repoKey(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.host}${parsed.pathname.replace(/\.git$/, "").replace(/\/+$/, "")}`.toLowerCase();
  } catch {
    return url.toLowerCase();
  }
}
