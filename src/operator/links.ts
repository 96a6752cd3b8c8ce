import type { OperatorSettings } from "../config/settings.js";

type Links = Pick<OperatorSettings, "publicUrl">;

/** The operator's page for a deployment, where a commit status links (none without TIDEMARK_PUBLIC_URL). */
export function deploymentUrl(settings: Links, id: string): string | undefined {
  return link(settings, `deployments/${encodeURIComponent(id)}`);
}

export function environmentUrl(settings: Links, environment: string): string | undefined {
  return link(settings, `environments/${encodeURIComponent(environment)}`);
}

export function planUrl(settings: Links, environment: string, sha: string): string | undefined {
  return link(settings, `plans/${encodeURIComponent(environment)}/${sha}`);
}

function link(settings: Links, path: string): string | undefined {
  return settings.publicUrl ? `${settings.publicUrl.replace(/\/+$/, "")}/${path}` : undefined;
}
