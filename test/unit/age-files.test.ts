import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openAgeFile, parseIdentities } from "../../src/secrets/age.js";

/** Keys and files made by Debian's age and age-keygen, as an operator's team makes them. */
const dir = mkdtempSync(join(tmpdir(), "tidemark-age-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keyFile(name: string): { path: string; recipient: string } {
  const path = join(dir, name);
  execFileSync("age-keygen", ["-o", path], { stdio: "ignore" });
  return { path, recipient: execFileSync("age-keygen", ["-y", path], { encoding: "utf8" }).trim() };
}

function encrypt(plain: string, recipients: string[], armored = false): Buffer {
  const input = join(dir, "plain");
  writeFileSync(input, plain);
  return execFileSync("age", [...(armored ? ["-a"] : []), ...recipients.flatMap((r) => ["-r", r]), input]);
}

describe("files encrypted with age", () => {
  const operator = keyFile("operator.txt");
  const teammate = keyFile("teammate.txt");
  const identities = (path: string) => parseIdentities(readFileSync(path, "utf8"));
  const secret = "DB_PASSWORD=correct horse battery staple\n";

  it("opens binary and armored files for the operator's identity, one of several recipients", async () => {
    expect(await openAgeFile(encrypt(secret, [teammate.recipient, operator.recipient]), identities(operator.path))).toEqual(
      Buffer.from(secret),
    );
    expect(await openAgeFile(encrypt(secret, [operator.recipient], true), identities(operator.path))).toEqual(Buffer.from(secret));
  });

  it("opens with any identity of several key files (a rotation window), and says why a file does not open", async () => {
    const both = [...identities(teammate.path), ...identities(operator.path)];
    expect(await openAgeFile(encrypt(secret, [operator.recipient]), both)).toEqual(Buffer.from(secret));
    expect(await openAgeFile(encrypt(secret, [teammate.recipient]), identities(operator.path))).toEqual({
      why: expect.stringMatching(/no identity matched/) as string,
    });
    const tampered = encrypt(secret, [operator.recipient]);
    tampered[tampered.length - 1]! ^= 1;
    expect(await openAgeFile(tampered, identities(operator.path))).toMatchObject({ why: expect.any(String) as string });
    expect(await openAgeFile(Buffer.from("not age at all"), identities(operator.path))).toMatchObject({
      why: expect.any(String) as string,
    });
    expect(await openAgeFile(encrypt(secret, [operator.recipient]), [])).toEqual({
      why: "the operator has no age identity (set TIDEMARK_AGE_KEY_FILE)",
    });
  });
});
