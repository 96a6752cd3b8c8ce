import { readFileSync } from "node:fs";
import { TidemarkError } from "../core/errors.js";

/** The operator's private key file, read once; a clear error if it cannot be. */
export function readSshKey(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new TidemarkError(
      "SSH_KEY_UNREADABLE",
      `cannot read the SSH key ${path}`,
      "pass --ssh-key with the operator's private key file, or leave it out to use the agent (SSH_AUTH_SOCK)",
      { cause: error },
    );
  }
}
