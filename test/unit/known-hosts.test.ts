import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { KnownHosts } from "../../src/remote/known-hosts.js";

const KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP9WQ3gSqUztxtk1aQBwZi6P14HeSQ+AXA4AurcSCyfe";
const KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmXMPwLpqCFHDi3NqAvVBRdLpMfw0Ez7mv79yQfJd8P";

describe("known_hosts", () => {
  it("finds plain, [host]:port and hashed entries, and leaves revoked keys out", () => {
    const salt = Buffer.from("0123456789abcdef0123");
    const hashed = `|1|${salt.toString("base64")}|${createHmac("sha1", salt).update("10.0.0.7").digest("base64")}`;
    const known = KnownHosts.parse(
      [
        "# comment",
        `127.0.0.1,localhost ${KEY_A} plain`,
        `[127.0.0.1]:2201 ${KEY_B}`,
        `${hashed} ${KEY_B}`,
        `@revoked 127.0.0.1 ${KEY_A}`,
        `@cert-authority *.example ${KEY_A}`,
      ].join("\n"),
    );
    expect(known.keysFor("127.0.0.1", 22)).toEqual([]);
    expect(known.keysFor("localhost", 22)).toEqual([KEY_A]);
    expect(known.keysFor("127.0.0.1", 2201)).toEqual([KEY_B]);
    expect(known.keysFor("10.0.0.7", 22)).toEqual([KEY_B]);
    expect(known.keysFor("10.0.0.8", 22)).toEqual([]);
  });
});
