import { readFileSync } from "node:fs";
import { generateIdentity } from "age-encryption";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { parseIdentities, sopsDataKeys } from "../../src/secrets/age.js";
import { openSops, sopsFormat, type SopsFormat } from "../../src/secrets/sops.js";

/** Files the real sops wrote, vendored with their throwaway key (test/fixtures/sops/README.md). */
const fixture = (name: string) => readFileSync(new URL(`../fixtures/sops/${name}`, import.meta.url));
const identities = parseIdentities(fixture("key.txt").toString("utf8"));
const open = (format: SopsFormat, bytes: Uint8Array, keys = identities) => openSops(format, bytes, sopsDataKeys(keys));

describe("SOPS files written by sops, opened in memory", () => {
  it("recognises them by their metadata, and plain files not", () => {
    expect(sopsFormat("db/secret.enc.yaml", fixture("secret.enc.yaml"))).toBe("yaml");
    expect(sopsFormat("secret.enc.json", fixture("secret.enc.json"))).toBe("json");
    expect(sopsFormat("app/secret.enc.env", fixture("secret.enc.env"))).toBe("dotenv");
    expect(sopsFormat("app/config.yaml", Buffer.from("sops: no\nkey: value\n"))).toBeUndefined();
    expect(sopsFormat("app/notes.txt", fixture("secret.enc.yaml"))).toBeUndefined();
  });

  it("decrypts YAML, JSON and dotenv, typed, with the metadata gone and every value for the redaction set", async () => {
    const yaml = await open("yaml", fixture("secret.enc.yaml"));
    expect(yaml).toMatchObject({ values: ["this is a secret"] });
    expect(parse((yaml as { plain: Buffer }).plain.toString())).toEqual({ secret: "this is a secret" });

    const json = await open("json", fixture("secret.enc.json"));
    expect(JSON.parse((json as { plain: Buffer }).plain.toString())).toEqual({
      secret: "this is a secret",
      string: "string",
      int: 7,
      float: 3.14,
      boolean: true,
      complex: { value: "this is a secret", array: ["one", "two", "three"] },
    });
    expect((json as { plain: Buffer }).plain.toString()).toMatch(/^{\n\t"secret": "this is a secret",\n\t"string": "string",\n/);

    // dotenv values are taken as written, quotes and all, as sops takes them.
    const env = await open("dotenv", fixture("secret.enc.env"));
    expect(env).toEqual({ plain: Buffer.from('secret="this is a secret"\n'), values: ['"this is a secret"'] });
  });

  it("refuses a changed value, a changed MAC, and a file for another identity, saying why", async () => {
    const yaml = fixture("secret.enc.yaml").toString();
    // The first value's ciphertext, one base64 character changed: its tag no longer matches.
    const value = yaml.replace("data:hxKQomzJ", "data:hxKQomzK");
    expect(await open("yaml", Buffer.from(value))).toEqual({ why: expect.stringMatching(/^secret: a value does not decrypt/) as string });
    const mac = yaml.replace("mac: ENC[AES256_GCM,data:kHA6", "mac: ENC[AES256_GCM,data:kHA7");
    expect(await open("yaml", Buffer.from(mac))).toEqual({ why: expect.stringMatching(/MAC does not decrypt/) as string });
    // A value taken out: what is left decrypts, and only the MAC can tell.
    const json = fixture("secret.enc.json")
      .toString()
      .replace(/\n {2}"string": "ENC\[[^"]+",/, "");
    expect(json).not.toContain('"string"');
    expect(await open("json", Buffer.from(json))).toEqual({ why: expect.stringMatching(/MAC does not match its values/) as string });
    expect(await open("yaml", fixture("secret.enc.yaml"), [await generateIdentity()])).toEqual({
      why: expect.stringMatching(/^no age identity of the operator's is among its recipients \(age1je6kjh/) as string,
    });
  });
});
