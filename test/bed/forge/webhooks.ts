import { createHmac, randomUUID } from "node:crypto";
import type { Schemas } from "./schemas.js";

export interface Hook {
  id: number;
  repo: string;
  url: string;
  secret: string;
  events: string[];
}

export interface Delivery {
  guid: string;
  hookId: number;
  event: string;
  repo: string;
  payload: unknown;
  /** The HTTP status the receiver answered, or null if it could not be reached. */
  status: number | null;
  error?: string;
  durationMs: number;
}

/** Thrown when the forge would send a payload that GitHub's schema refuses: the stand-in itself is wrong. */
export class PayloadViolation extends Error {}

/**
 * Repository webhooks as GitHub sends them: JSON body, HMAC signatures over the
 * exact bytes, a GUID per delivery, one attempt (GitHub does not retry failed
 * deliveries), redelivery on request with the same GUID.
 */
export class Webhooks {
  private readonly hooks: Hook[] = [];
  readonly deliveries: Delivery[] = [];
  private nextId = 400_000_000;

  constructor(private readonly schemas: Schemas) {}

  add(repo: string, options: { url: string; secret: string; events?: string[] }): Hook {
    const host = new URL(options.url).hostname;
    // The bed's network rule: traffic goes to this machine only.
    if (!/^127\.|^localhost$|^\[::1\]$/.test(host)) throw new Error(`webhook URL must point at loopback, not ${host}`);
    const hook = { id: this.nextId++, repo, url: options.url, secret: options.secret, events: options.events ?? ["push"] };
    this.hooks.push(hook);
    return hook;
  }

  /** Throws unless GitHub's schema for the event (and its action, for events that have them) accepts the payload. */
  check(event: string, payload: unknown): void {
    const action = (payload as { action?: unknown }).action;
    const errors = this.schemas.check("webhooks", ["definitions", `${event}$${typeof action === "string" ? action : "event"}`], payload);
    if (errors.length > 0)
      throw new PayloadViolation(`the forge built a ${event} payload that GitHub's schema refuses: ${errors.join("; ")}`);
  }

  /** Delivers a checked payload to every hook of the repository that wants the event. */
  dispatch(repo: string, event: string, payload: unknown): Promise<Delivery[]> {
    this.check(event, payload);
    const hooks = this.hooks.filter((hook) => hook.repo === repo && (hook.events.includes(event) || hook.events.includes("*")));
    return Promise.all(hooks.map((hook) => this.deliver(hook, event, payload, randomUUID())));
  }

  async redeliver(guid: string): Promise<Delivery> {
    const original = this.deliveries.find((delivery) => delivery.guid === guid);
    const hook = this.hooks.find((candidate) => candidate.id === original?.hookId);
    if (!original || !hook) throw new Error(`no delivery ${guid}`);
    return this.deliver(hook, original.event, original.payload, guid);
  }

  private async deliver(hook: Hook, event: string, payload: unknown, guid: string): Promise<Delivery> {
    const body = JSON.stringify(payload);
    const headers = {
      "content-type": "application/json",
      "user-agent": "GitHub-Hookshot/tidemark-forge",
      "x-github-event": event,
      "x-github-delivery": guid,
      "x-github-hook-id": String(hook.id),
      "x-github-hook-installation-target-type": "repository",
      "x-github-hook-installation-target-id": String((payload as { repository?: { id?: number } }).repository?.id ?? 0),
      "x-hub-signature": `sha1=${createHmac("sha1", hook.secret).update(body).digest("hex")}`,
      "x-hub-signature-256": `sha256=${createHmac("sha256", hook.secret).update(body).digest("hex")}`,
    };
    const started = Date.now();
    const delivery: Delivery = { guid, hookId: hook.id, event, repo: hook.repo, payload, status: null, durationMs: 0 };
    try {
      const response = await fetch(hook.url, { method: "POST", headers, body, signal: AbortSignal.timeout(10_000) });
      await response.arrayBuffer();
      delivery.status = response.status;
    } catch (error) {
      delivery.error = error instanceof Error ? error.message : String(error);
    }
    delivery.durationMs = Date.now() - started;
    this.deliveries.push(delivery);
    return delivery;
  }
}
