import { createDecipheriv, createHash, timingSafeEqual } from "node:crypto";
import { isMap, isScalar, isSeq, parseDocument, type Document, type Node } from "yaml";

/**
 * SOPS files of a config tree, opened in memory: recognised by their `sops`
 * metadata, their data key unwrapped from an age stanza (by the caller, who
 * holds the identities), every value decrypted with AES-256-GCM and the MAC
 * over all values checked, as `sops --decrypt` does. A file that does not
 * open says why; nothing here throws on bad input.
 */

export type SopsFormat = "yaml" | "json" | "dotenv";

/** The age stanzas of a file: the data key wrapped for each recipient. */
export interface AgeStanza {
  recipient: string;
  enc: string;
}

/** Unwraps the 32-byte data key from one of the stanzas, or says why none opens. */
export type DataKeyUnwrapper = (stanzas: readonly AgeStanza[]) => Promise<Buffer | { why: string }>;

export interface OpenedSops {
  /** The file as `sops --decrypt` gives it: the data without its `sops` metadata, in its own format. */
  plain: Buffer;
  /** Every decrypted value, for the redaction set. */
  values: string[];
}

/** The SOPS format of a file, if it is one: its name's extension, then its metadata. */
export function sopsFormat(path: string, bytes: Uint8Array): SopsFormat | undefined {
  const name = path.slice(path.lastIndexOf("/") + 1);
  const text = Buffer.from(bytes).toString("utf8");
  if (/\.(ya?ml)$/.test(name)) return /^sops:\s*$/m.test(text) && /^\s+mac: ENC\[/m.test(text) ? "yaml" : undefined;
  if (name.endsWith(".json")) return /"sops"\s*:\s*\{/.test(text) && /"mac"\s*:\s*"ENC\[/.test(text) ? "json" : undefined;
  if (name.endsWith(".env")) return /^sops_mac=ENC\[/m.test(text) && /^sops_version=/m.test(text) ? "dotenv" : undefined;
  return undefined;
}

/** The age recipients a SOPS file's data key is wrapped for, as its metadata names them: read without any key. */
export function sopsRecipients(format: SopsFormat, bytes: Uint8Array): string[] | { why: string } {
  const text = Buffer.from(bytes).toString("utf8");
  const read = format === "dotenv" ? readDotenv(text) : readTree(text, format);
  return "why" in read ? read : read.metadata.age.map((stanza) => stanza.recipient);
}

/** Opens a SOPS file: its metadata read, its data key unwrapped, its values decrypted and its MAC checked. */
export async function openSops(format: SopsFormat, bytes: Uint8Array, unwrap: DataKeyUnwrapper): Promise<OpenedSops | { why: string }> {
  const text = Buffer.from(bytes).toString("utf8");
  const read = format === "dotenv" ? readDotenv(text) : readTree(text, format);
  if ("why" in read) return read;
  const { metadata } = read;
  if (metadata.keyGroups) return { why: "key groups (Shamir's secret sharing) are not supported: encrypt for age recipients only" };
  if (metadata.age.length === 0) return { why: "no age recipient in its sops metadata: Tidemark opens age-wrapped files only" };
  const rule = encryptionRule(metadata);
  if ("why" in rule) return rule;
  const key = await unwrap(metadata.age);
  if (!Buffer.isBuffer(key)) return key;
  if (key.length !== 32) return { why: `its data key is ${key.length} bytes, not 32` };

  const hash = createHash("sha512");
  if (metadata.macOnlyEncrypted) hash.update(MAC_ONLY_ENCRYPTED);
  const values: string[] = [];
  for (const leaf of read.leaves) {
    const encrypted = rule(leaf.path);
    let bytes: Buffer;
    if (encrypted) {
      const opened = decryptValue(leaf.value, key, aad(leaf.path));
      if ("why" in opened) return { why: `${leaf.path.join(".") || "a value"}: ${opened.why}` };
      bytes = opened.plain;
      leaf.set(typed(opened.type, bytes));
      values.push(bytes.toString("utf8"));
    } else {
      const plain = macBytes(leaf.value);
      if (plain === undefined) continue;
      bytes = plain;
    }
    if (!metadata.macOnlyEncrypted || encrypted) hash.update(bytes);
  }
  const mac = decryptValue(metadata.mac, key, metadata.lastModified);
  if ("why" in mac) return { why: `its MAC does not decrypt (${mac.why}): the file was changed after sops wrote it` };
  const computed = Buffer.from(hash.digest("hex").toUpperCase());
  if (mac.plain.length !== computed.length || !timingSafeEqual(mac.plain, computed))
    return { why: "its MAC does not match its values: the file was changed after sops wrote it" };
  for (const comment of read.comments) {
    // A comment sops could not decrypt either stays as written: sops itself only warns.
    const opened = decryptValue(comment.value, key, aad(comment.path));
    if (!("why" in opened)) comment.set(opened.plain.toString("utf8"));
  }
  return { plain: Buffer.from(read.write()), values };
}

/** sops's MAC of only the encrypted values starts from sha256("sops"), so it never equals a MAC of all values. */
const MAC_ONLY_ENCRYPTED = Buffer.from("8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69", "hex");

interface Metadata {
  age: AgeStanza[];
  lastModified: string;
  mac: string;
  macOnlyEncrypted: boolean;
  keyGroups: boolean;
  unencryptedSuffix?: string;
  encryptedSuffix?: string;
  unencryptedRegex?: string;
  encryptedRegex?: string;
}

/** A value of the file, by the keys that lead to it (a list adds none), and how to put its decrypted form back. */
interface Leaf {
  path: string[];
  value: unknown;
  set: (value: unknown) => void;
}

interface Read {
  metadata: Metadata;
  leaves: Leaf[];
  comments: Array<{ path: string[]; value: string; set: (text: string) => void }>;
  write: () => string;
}

/** YAML and JSON, read as a YAML document: key order and comments kept, as sops keeps them. */
function readTree(text: string, format: "yaml" | "json"): Read | { why: string } {
  const document = parseDocument(text, { uniqueKeys: true, version: "1.2" });
  if (document.errors.length > 0)
    return { why: `not valid ${format === "json" ? "JSON" : "YAML"}: ${document.errors[0]!.message.split("\n")[0]}` };
  const root = document.contents;
  if (!isMap(root)) return { why: "its top level is not a mapping with sops metadata" };
  const sopsPair = root.items.find((pair) => isScalar(pair.key) && pair.key.value === "sops");
  const metadata = sopsPair && metadataOf(plainData(sopsPair.value));
  if (!metadata || "why" in metadata) return metadata ?? { why: "no sops metadata" };
  root.items = root.items.filter((pair) => pair !== sopsPair);

  const leaves: Leaf[] = [];
  const comments: Read["comments"] = [];
  const commentOf = (node: { commentBefore?: string | null; comment?: string | null }, path: string[]) => {
    for (const field of ["commentBefore", "comment"] as const) {
      const value = node[field]?.trim();
      if (value && ENC.test(value)) comments.push({ path, value, set: (text) => (node[field] = text) });
    }
  };
  const walk = (node: unknown, path: string[]): void => {
    if (isMap(node)) {
      commentOf(node, path);
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        if (isScalar(pair.key)) commentOf(pair.key, path);
        walk(pair.value, [...path, key]);
      }
    } else if (isSeq(node)) {
      commentOf(node, path);
      for (const item of node.items) walk(item, path);
    } else if (isScalar(node)) {
      commentOf(node, path);
      if (node.value !== null) leaves.push({ path, value: node.value, set: (value) => (node.value = value) });
    }
  };
  walk(root, []);
  commentOf(document, []);
  return { metadata, leaves, comments, write: () => (format === "json" ? `${jsonText(document)}\n` : document.toString()) };
}

/** The document as sops writes JSON: keys in their order (a JavaScript object would put `1` before `a`), a tab per level. */
function jsonText(document: Document): string {
  const write = (value: unknown, depth: number): string => {
    const inner = "\t".repeat(depth + 1);
    const outer = "\t".repeat(depth);
    if (value instanceof Map) {
      if (value.size === 0) return "{}";
      const members = [...value].map(([key, item]) => `${inner}${JSON.stringify(String(key))}: ${write(item, depth + 1)}`);
      return `{\n${members.join(",\n")}\n${outer}}`;
    }
    if (Array.isArray(value)) {
      if (value.length === 0) return "[]";
      return `[\n${value.map((item) => `${inner}${write(item, depth + 1)}`).join(",\n")}\n${outer}]`;
    }
    return JSON.stringify(value) ?? "null";
  };
  return write(document.toJS({ mapAsMap: true }), 0);
}

/** A YAML node's data, plain. */
function plainData(node: Node | null | undefined): unknown {
  if (isMap(node))
    return Object.fromEntries(
      node.items.map((pair) => [isScalar(pair.key) ? String(pair.key.value) : String(pair.key), plainData(pair.value as Node)]),
    );
  if (isSeq(node)) return node.items.map((item) => plainData(item as Node));
  if (isScalar(node)) return node.value;
  return null;
}

/** dotenv, as sops reads it: `KEY=value` lines (`\n` for a newline), `#` comments, `sops_*` metadata flattened. */
function readDotenv(text: string): Read | { why: string } {
  type Line = { comment: string } | { key: string; value: string };
  const lines: Line[] = [];
  const flat: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("#")) {
      lines.push({ comment: line.slice(1) });
      continue;
    }
    const at = line.indexOf("=");
    if (at < 0) return { why: `a line without '=': a dotenv file has KEY=value lines` };
    const key = line.slice(0, at);
    const value = line.slice(at + 1).replaceAll("\\n", "\n");
    if (key.startsWith("sops_")) flat[key.slice(5)] = value;
    else lines.push({ key, value });
  }
  const metadata = metadataOf(unflatten(flat));
  if ("why" in metadata) return metadata;
  return {
    metadata,
    leaves: lines.flatMap((line) =>
      "key" in line ? [{ path: [line.key], value: line.value, set: (value: unknown) => (line.value = String(value)) }] : [],
    ),
    comments: lines.flatMap((line) =>
      "comment" in line && ENC.test(line.comment) ? [{ path: [], value: line.comment, set: (text: string) => (line.comment = text) }] : [],
    ),
    write: () =>
      lines.map((line) => ("key" in line ? `${line.key}=${line.value.replaceAll("\n", "\\n")}\n` : `#${line.comment}\n`)).join(""),
  };
}

/** sops's dotenv metadata keys, `age__list_0__map_enc`, back into their structure. */
function unflatten(flat: Record<string, string>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(flat)) {
    const parts = key.split(/__(list|map)_/);
    let node: Record<string, unknown> | unknown[] = root;
    let name: string | number = parts[0]!;
    for (let i = 1; i < parts.length; i += 2) {
      const next: unknown[] | Record<string, unknown> = parts[i] === "list" ? [] : {};
      const existing = (node as Record<string, unknown>)[name] as typeof next | undefined;
      const child = existing ?? next;
      (node as Record<string, unknown>)[name] = child;
      node = child;
      name = parts[i] === "list" ? Number(parts[i + 1]) : parts[i + 1]!;
    }
    (node as Record<string, unknown>)[name] = value;
  }
  return root;
}

function metadataOf(data: unknown): Metadata | { why: string } {
  if (!data || typeof data !== "object") return { why: "its sops metadata is not a mapping" };
  const sops = data as Record<string, unknown>;
  const text = (field: string) => (typeof sops[field] === "string" ? sops[field] : undefined);
  const mac = text("mac");
  const lastModified = text("lastmodified");
  if (!mac || !lastModified) return { why: "its sops metadata has no mac or no lastmodified" };
  const age = Array.isArray(sops.age) ? sops.age : [];
  const stanzas = age.flatMap((stanza: unknown) => {
    const { recipient, enc } = (stanza ?? {}) as Record<string, unknown>;
    return typeof recipient === "string" && typeof enc === "string" ? [{ recipient, enc }] : [];
  });
  return {
    age: stanzas,
    mac,
    lastModified,
    macOnlyEncrypted: sops.mac_only_encrypted === true || sops.mac_only_encrypted === "true",
    keyGroups: Array.isArray(sops.key_groups) && sops.key_groups.length > 0,
    ...optional("unencryptedSuffix", text("unencrypted_suffix")),
    ...optional("encryptedSuffix", text("encrypted_suffix")),
    ...optional("unencryptedRegex", text("unencrypted_regex")),
    ...optional("encryptedRegex", text("encrypted_regex")),
  };
}

const optional = <K extends string>(key: K, value: string | undefined) =>
  value === undefined ? {} : ({ [key]: value } as Record<K, string>);

/** Whether sops encrypted the value at a path: its metadata's one rule, matched against any key on the way. */
function encryptionRule(metadata: Metadata): ((path: readonly string[]) => boolean) | { why: string } {
  const rules = [metadata.unencryptedSuffix, metadata.encryptedSuffix, metadata.unencryptedRegex, metadata.encryptedRegex];
  if (rules.filter((rule) => rule !== undefined).length > 1)
    return { why: "its sops metadata sets more than one of the (un)encrypted suffix and regex rules" };
  const any = (path: readonly string[], test: (key: string) => boolean) => path.some(test);
  try {
    if (metadata.encryptedSuffix !== undefined) return (path) => any(path, (key) => key.endsWith(metadata.encryptedSuffix!));
    if (metadata.unencryptedRegex !== undefined) {
      const pattern = new RegExp(metadata.unencryptedRegex);
      return (path) => !any(path, (key) => pattern.test(key));
    }
    if (metadata.encryptedRegex !== undefined) {
      const pattern = new RegExp(metadata.encryptedRegex);
      return (path) => any(path, (key) => pattern.test(key));
    }
  } catch (error) {
    return { why: `its sops metadata has a regex JavaScript cannot read: ${error instanceof Error ? error.message : String(error)}` };
  }
  const suffix = metadata.unencryptedSuffix ?? "_unencrypted";
  return (path) => !any(path, (key) => key.endsWith(suffix));
}

const ENC = /^ENC\[AES256_GCM,data:([A-Za-z0-9+/=]*),iv:([A-Za-z0-9+/=]+),tag:([A-Za-z0-9+/=]+),type:([a-z0-9]+)\]$/;

/** The additional data sops binds each value to: the keys on its way, joined and ended by ':'. */
const aad = (path: readonly string[]) => `${path.join(":")}:`;

function decryptValue(value: unknown, key: Buffer, additional: string): { type: string; plain: Buffer } | { why: string } {
  // sops leaves an empty string as it is.
  if (value === "") return { type: "str", plain: Buffer.alloc(0) };
  const match = typeof value === "string" ? ENC.exec(value) : null;
  if (!match) return { why: "a value sops should have encrypted is not ENC[AES256_GCM,...]" };
  const [, data, iv, tag, type] = match;
  const nonce = Buffer.from(iv!, "base64");
  const authTag = Buffer.from(tag!, "base64");
  if (nonce.length !== 32 || authTag.length !== 16) return { why: "an encrypted value with a malformed iv or tag" };
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: 16 });
    decipher.setAAD(Buffer.from(additional, "utf8"));
    decipher.setAuthTag(authTag);
    return { type: type!, plain: Buffer.concat([decipher.update(Buffer.from(data!, "base64")), decipher.final()]) };
  } catch {
    return { why: "a value does not decrypt with the file's data key (changed, or moved to another key)" };
  }
}

/** A decrypted value in its own type, as sops gives it back. */
function typed(type: string, plain: Buffer): unknown {
  const text = plain.toString("utf8");
  switch (type) {
    case "int":
    case "float":
      return Number(text);
    case "bool":
      return text.toLowerCase() === "true";
    default:
      return text;
  }
}

/** The bytes sops hashes for a value it did not encrypt (Go's strconv forms), or undefined for one it skips (null). */
function macBytes(value: unknown): Buffer | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === "boolean") return Buffer.from(value ? "True" : "False");
  if (typeof value === "number") return Buffer.from(goNumber(value));
  return Buffer.from(typeof value === "string" ? value : JSON.stringify(value), "utf8");
}

/** A number as Go's FormatFloat(v, 'f', -1, 64) writes it: never with an exponent. */
function goNumber(value: number): string {
  const text = String(value);
  if (!/e/i.test(text)) return text;
  return value.toLocaleString("en-US", { useGrouping: false, maximumFractionDigits: 20 });
}
