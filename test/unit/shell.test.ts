import { describe, expect, it } from "vitest";
import { command, quote } from "../../src/remote/shell.js";

describe("quote", () => {
  it("leaves plain words alone", () => {
    expect(quote("/var/lib/tidemark/apps/nginx/current")).toBe("/var/lib/tidemark/apps/nginx/current");
    expect(quote("nginx@1.service")).toBe("nginx@1.service");
  });

  it("wraps words the shell would read as code", () => {
    expect(quote("$(touch /tmp/pwned)")).toBe("'$(touch /tmp/pwned)'");
    expect(quote("a b")).toBe("'a b'");
    expect(quote("")).toBe("''");
    expect(quote("`id`;rm -rf /")).toBe("'`id`;rm -rf /'");
  });

  it("closes and reopens quotes around a single quote", () => {
    expect(quote("it's")).toBe(`'it'\\''s'`);
  });

  it("leaves a leading dash to `--`: quotes would not stop a program reading it as an option", () => {
    expect(quote("-rf")).toBe("-rf");
    expect(quote("-odd name")).toBe("'-odd name'");
  });

  it("refuses NUL, which no shell word can hold", () => {
    expect(() => quote("a\0b")).toThrow(/NUL/);
  });
});

describe("command", () => {
  it("joins quoted words", () => {
    expect(command("systemctl", "restart", "my app.service")).toBe("systemctl restart 'my app.service'");
  });
});
