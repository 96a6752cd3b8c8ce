import { readFileSync } from "node:fs";
import { run } from "./proc.js";

export interface KeyPair {
  privateKeyPath: string;
  publicKey: string;
}

export async function generateKey(path: string, comment: string): Promise<KeyPair> {
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path]);
  const [type, blob] = readFileSync(`${path}.pub`, "utf8").trim().split(" ");
  return { privateKeyPath: path, publicKey: `${type} ${blob}` };
}
