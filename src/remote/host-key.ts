import { TidemarkError } from "../core/errors.js";

export interface HostKey {
  type: string;
  /** The key blob exactly as the server sends it in the SSH handshake. */
  blob: Buffer;
}

/** Parses an OpenSSH public key line (`ssh-ed25519 AAAA... comment`). */
export function parseHostKey(line: string): HostKey {
  const [type, base64] = line.trim().split(/\s+/);
  const blob = base64 === undefined ? Buffer.alloc(0) : Buffer.from(base64, "base64");
  // The blob begins with its own type name; a mismatch means a mangled line.
  const embeddedLength = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
  const embedded = embeddedLength > 0 ? blob.subarray(4, 4 + embeddedLength).toString("latin1") : "";
  if (type === undefined || embedded !== type) {
    throw new TidemarkError(
      "HOST_KEY_INVALID",
      `not an OpenSSH public key: ${JSON.stringify(line.slice(0, 40))}`,
      "use the host's key as printed by `ssh-keyscan -t ed25519 HOST` or found in /etc/ssh/ssh_host_ed25519_key.pub",
    );
  }
  return { type, blob };
}

export function formatHostKey(blob: Buffer): string {
  const typeLength = blob.length >= 4 ? blob.readUInt32BE(0) : 0;
  return `${blob.subarray(4, 4 + typeLength).toString("latin1")} ${blob.toString("base64")}`;
}
