import { describe, expect, it } from "vitest";
import { formatHostKey, parseHostKey } from "../../src/remote/host-key.js";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP9WQ3gSqUztxtk1aQBwZi6P14HeSQ+AXA4AurcSCyfe";

describe("parseHostKey", () => {
  it("reads an OpenSSH public key line and keeps the wire blob", () => {
    const key = parseHostKey(`${KEY} root@web01\n`);
    expect(key.type).toBe("ssh-ed25519");
    expect(formatHostKey(key.blob)).toBe(KEY);
  });

  it("refuses a line whose type does not match its blob", () => {
    expect(() => parseHostKey(KEY.replace("ssh-ed25519", "ssh-rsa"))).toThrow(expect.objectContaining({ code: "HOST_KEY_INVALID" }));
  });

  it("refuses text that is not a key", () => {
    expect(() => parseHostKey("web01")).toThrow(expect.objectContaining({ code: "HOST_KEY_INVALID" }));
  });
});
