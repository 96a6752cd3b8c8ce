import { generateKeyPair, randomBytes, randomInt, verify, type KeyObject } from "node:crypto";
import { promisify } from "node:util";
import { isoTime, ownerId, userObject, type Urls } from "./github-objects.js";
import type { ForgeRepo } from "./repos.js";

export interface Installation {
  id: number;
  appId: number;
  clientId: string;
  repo: ForgeRepo;
  createdAt: number;
}

interface ForgeApp {
  id: number;
  publicKey: KeyObject;
  installation: Installation;
}

/** Who a REST request authenticated as. `none` carries the JWT's problem when a JWT was offered. */
export type Credential =
  | { kind: "token" }
  | { kind: "installation"; installation: Installation }
  | { kind: "jwt"; installation: Installation }
  | { kind: "none"; jwtProblem?: string };

/** What `POST /_bed/apps` hands a test: what GitHub shows an app's owner. */
export interface AppCredentials {
  appId: number;
  installationId: number;
  /** PKCS#1 PEM ("BEGIN RSA PRIVATE KEY"), the format GitHub's "Generate a private key" downloads. */
  privateKey: string;
}

/** GitHub's own words for a JWT it refuses. */
export const UNDECODABLE = "A JSON web token could not be decoded";
const ISSUER = "'Issuer' claim ('iss') must be an Integer";
const ISSUED_AT = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";
const EXPIRED = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
const TOO_LONG = "'Expiration time' claim ('exp') is too far in the future";
/** GitHub's allowance for clock drift, and the longest life it gives a JWT. */
const DRIFT_SECONDS = 60;
const JWT_MAX_SECONDS = 600;
const TOKEN_SECONDS = 3600;
const PERMISSIONS = { statuses: "write", deployments: "write", contents: "write", pull_requests: "read", metadata: "read" } as const;
const ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

const generateRsaKeyPair = promisify(generateKeyPair);

/**
 * GitHub Apps as GitHub runs them: an RSA key per app, RS256 JWTs checked
 * with GitHub's rules (clock drift, ten minutes at most), and installation
 * tokens (`ghs_…`, one hour) that work like a token for the one repository
 * the app is installed on.
 */
export class Apps {
  private readonly apps = new Map<number, ForgeApp>();
  private readonly tokens = new Map<string, { installation: Installation; expiresAt: number }>();
  // Apart from each other, so that an installation id passed as an app id (a common slip) is refused.
  private nextAppId = 300_001;
  private nextInstallationId = 50_000_001;

  constructor(private readonly urls: Urls) {}

  async create(repo: ForgeRepo): Promise<AppCredentials> {
    const { publicKey, privateKey } = await generateRsaKeyPair("rsa", { modulusLength: 2048 });
    const id = this.nextAppId++;
    const installation = {
      id: this.nextInstallationId++,
      appId: id,
      clientId: `Iv23${randomBytes(8).toString("hex")}`,
      repo,
      createdAt: now(),
    };
    this.apps.set(id, { id, publicKey, installation });
    return { appId: id, installationId: installation.id, privateKey: privateKey.export({ type: "pkcs1", format: "pem" }).toString() };
  }

  /** Reads the Authorization header: the forge's token, an issued installation token, or an app's JWT. */
  identify(authorization: string | undefined, forgeToken: string): Credential {
    const value = /^(?:token|bearer) (.+)$/i.exec(authorization ?? "")?.[1];
    if (value === undefined) return { kind: "none" };
    if (value === forgeToken) return { kind: "token" };
    const issued = this.tokens.get(value);
    if (issued) return issued.expiresAt > Date.now() ? { kind: "installation", installation: issued.installation } : { kind: "none" };
    if (value.split(".").length !== 3) return { kind: "none" };
    const checked = this.checkJwt(value);
    return typeof checked === "string" ? { kind: "none", jwtProblem: checked } : { kind: "jwt", installation: checked.installation };
  }

  issueToken(installation: Installation) {
    const token = `ghs_${Array.from({ length: 36 }, () => ALPHANUMERIC[randomInt(ALPHANUMERIC.length)]).join("")}`;
    const expiresAt = now() + TOKEN_SECONDS;
    this.tokens.set(token, { installation, expiresAt: expiresAt * 1000 });
    return { token, expires_at: isoTime(expiresAt), permissions: PERMISSIONS, repository_selection: "selected" as const };
  }

  installationObject(installation: Installation) {
    const owner = installation.repo.owner;
    return {
      id: installation.id,
      client_id: installation.clientId,
      account: userObject(this.urls, owner, ownerId(owner)),
      repository_selection: "selected" as const,
      access_tokens_url: `${this.urls.api}/app/installations/${installation.id}/access_tokens`,
      repositories_url: `${this.urls.api}/installation/repositories`,
      html_url: `${this.urls.web}/settings/installations/${installation.id}`,
      app_id: installation.appId,
      app_slug: `tidemark-forge-app-${installation.appId}`,
      target_id: ownerId(owner),
      target_type: "User",
      permissions: PERMISSIONS,
      events: [],
      created_at: isoTime(installation.createdAt),
      updated_at: isoTime(installation.createdAt),
      single_file_name: null,
      has_multiple_single_files: false,
      single_file_paths: [],
      suspended_by: null,
      suspended_at: null,
    };
  }

  /** The app a JWT speaks for, or GitHub's message for why it does not. */
  private checkJwt(jwt: string): ForgeApp | string {
    const [header = "", claims = "", signature = ""] = jwt.split(".");
    const decoded = { header: decodeJson(header), claims: decodeJson(claims) };
    if (decoded.header?.alg !== "RS256" || !decoded.claims) return UNDECODABLE;
    const { iss, iat, exp } = decoded.claims;
    if (!Number.isInteger(iss) && !(typeof iss === "string" && /^\d+$/.test(iss))) return ISSUER;
    // An unknown app and a key that is not the app's look the same to GitHub: the signature cannot be checked.
    const app = this.apps.get(Number(iss));
    if (!app || !verify("RSA-SHA256", Buffer.from(`${header}.${claims}`), app.publicKey, Buffer.from(signature, "base64url")))
      return UNDECODABLE;
    const at = now();
    if (typeof iat !== "number" || !Number.isInteger(iat) || iat > at + DRIFT_SECONDS) return ISSUED_AT;
    if (typeof exp !== "number" || !Number.isInteger(exp) || exp <= at) return EXPIRED;
    if (exp - iat > JWT_MAX_SECONDS) return TOO_LONG;
    return app;
  }
}

function decodeJson(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function now(): number {
  return Math.floor(Date.now() / 1000);
}
