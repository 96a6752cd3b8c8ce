import type { FileEntry } from "../core/tree.js";
import { remember } from "../git/tree-reader.js";
import { openAgeFile, readIdentityFiles, sopsDataKeys } from "./age.js";
import { openSops, sopsFormat, type SopsFormat } from "./sops.js";

/**
 * The secret files of a config tree: an age file (its entry says so, from
 * its `.age` name), or a SOPS file (its `sops` metadata says so). What is
 * decrypted is handed to the caller and never kept here: only whether a
 * blob is a SOPS file, which its ciphertext already tells anyone.
 */
export type SecretKind = "age" | SopsFormat;

export interface OpenedSecret {
  /** The file as the host gets it. */
  plain: Buffer;
  /** What the redaction set takes from it while the deployment runs. */
  values: string[];
}

/** Opens a secret file with the operator's identities; `why` says what stopped it. */
export type SecretOpener = (kind: SecretKind, bytes: Uint8Array) => Promise<OpenedSecret | { why: string }>;

/** Only these names can be SOPS files: any other file is not read to find out. */
export const mayBeSops = (path: string) => /\.(ya?ml|json|env)$/.test(path);

const sopsKinds = new Map<string, Promise<SopsFormat | undefined>>();

/** What kind of secret a file is, if it is one; a SOPS candidate's blob is read once per oid. */
export async function secretKind(
  path: string,
  file: FileEntry,
  blob: (oid: string) => Promise<Uint8Array>,
): Promise<SecretKind | undefined> {
  if (file.age) return "age";
  if (!mayBeSops(path)) return undefined;
  const extension = path.slice(path.lastIndexOf("."));
  return remember(sopsKinds, `${file.oid}${extension}`, async () => sopsFormat(path, await blob(file.oid)), 8192);
}

/** The opener for the identities of some age key files (none: every secret fails to open, saying so). */
export function secretOpener(keyFiles: readonly string[]): SecretOpener {
  const identities = readIdentityFiles(keyFiles);
  const unwrap = sopsDataKeys(identities);
  return async (kind, bytes) => {
    if (kind !== "age") return openSops(kind, bytes, unwrap);
    const plain = await openAgeFile(bytes, identities);
    return Buffer.isBuffer(plain) ? { plain, values: wholeFileValues(plain) } : plain;
  };
}

/**
 * What of a whole decrypted file a unit might print: each line, and the value
 * of each `KEY=value` or `key: value` line without its quotes. The redactor
 * skips what is too short to be a secret.
 */
export function wholeFileValues(plain: Buffer): string[] {
  const values = new Set<string>();
  for (const raw of plain.toString("utf8").split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    values.add(line);
    const assigned = /^(?:export\s+)?[A-Za-z_][\w.-]*\s*[=:]\s*(.*)$/.exec(line)?.[1]?.trim();
    if (assigned) values.add(assigned.replace(/^(["'])(.*)\1$/, "$2"));
  }
  return [...values];
}
