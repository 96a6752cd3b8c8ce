import { readFileSync } from "node:fs";
import { armor, Decrypter } from "age-encryption";
import { TidemarkError } from "../core/errors.js";
import type { AgeStanza, DataKeyUnwrapper } from "./sops.js";

/**
 * The operator's age identities and what they open: whole files encrypted
 * with age (`db.env.age`), and the data keys of SOPS files. Plaintext is
 * returned to the caller, in memory, and never kept here.
 */

/** The identities of an age key file as age-keygen writes it: `AGE-SECRET-KEY-1...` lines; blank and `#` lines skipped. */
export function parseIdentities(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
}

/**
 * The identities of the operator's age key files (TIDEMARK_AGE_KEY_FILE),
 * read now: none when none is given (a config tree with secrets then fails
 * to deploy, naming them). A file that cannot be read or holds no identity
 * stops the command before anything else; its content is never quoted.
 */
export function readIdentityFiles(paths: readonly string[]): string[] {
  return paths.flatMap((path) => {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      throw new TidemarkError(
        "SETTINGS_INVALID",
        `cannot read the age key file ${path}: ${(error as NodeJS.ErrnoException).code ?? "unreadable"}`,
        "make it readable by the operator's user, or take it out of TIDEMARK_AGE_KEY_FILE",
        { cause: error },
      );
    }
    const identities = parseIdentities(text);
    if (identities.length === 0 || identities.some((line) => !line.startsWith("AGE-SECRET-KEY-1")))
      throw new TidemarkError(
        "SETTINGS_INVALID",
        `${path} is not an age key file: each line is an AGE-SECRET-KEY-1... identity, a # comment or blank`,
        "make one with age-keygen -o FILE, and give the public key it prints to the people who encrypt",
      );
    return identities;
  });
}

const ARMOR = "-----BEGIN AGE ENCRYPTED FILE-----";

/** A file encrypted with age, binary or armored, opened with any of the identities; or why it does not open. */
export async function openAgeFile(bytes: Uint8Array, identities: readonly string[]): Promise<Buffer | { why: string }> {
  const text = Buffer.from(bytes.subarray(0, ARMOR.length)).toString("latin1");
  let file: Uint8Array;
  try {
    file = text === ARMOR ? armor.decode(Buffer.from(bytes).toString("utf8")) : bytes;
  } catch (error) {
    return { why: `not an age file: ${reason(error)}` };
  }
  return decryptWith(file, identities);
}

/** Unwraps a SOPS file's data key from whichever of its age stanzas an identity opens. */
export function sopsDataKeys(identities: readonly string[]): DataKeyUnwrapper {
  return async (stanzas: readonly AgeStanza[]) => {
    for (const { enc } of stanzas) {
      let file: Uint8Array;
      try {
        file = armor.decode(enc);
      } catch {
        continue;
      }
      const key = await decryptWith(file, identities);
      if (Buffer.isBuffer(key)) return key;
    }
    return { why: `no age identity of the operator's is among its recipients (${stanzas.map((stanza) => stanza.recipient).join(", ")})` };
  };
}

async function decryptWith(file: Uint8Array, identities: readonly string[]): Promise<Buffer | { why: string }> {
  if (identities.length === 0) return { why: "the operator has no age identity (set TIDEMARK_AGE_KEY_FILE)" };
  const decrypter = new Decrypter();
  try {
    for (const identity of identities) decrypter.addIdentity(identity);
  } catch (error) {
    return { why: `an age identity of the operator's is malformed: ${reason(error)}` };
  }
  try {
    return Buffer.from(await decrypter.decrypt(file));
  } catch (error) {
    return { why: reason(error) };
  }
}

const reason = (error: unknown) => (error instanceof Error ? error.message : String(error));
