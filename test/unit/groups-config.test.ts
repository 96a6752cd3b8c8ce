import { describe, expect, it } from "vitest";
import { parseSourceConfig } from "../../src/config/source-config.js";

const inventory = `hosts:
  web01: { address: 127.0.0.1, port: 2201, vars: { weight: 3 } }
  web02: { address: 127.0.0.1, port: 2202 }
  db01: { address: 127.0.0.1, port: 2203 }
`;

describe("groups and vars in tidemark.yaml", () => {
  it("lets an environment's hosts: name groups, each host once, and keeps groups in the order listed", () => {
    const { config, problems } = parseSourceConfig(`${inventory}groups:
  web: [web01, web02]
  eu: { hosts: [web02, db01], vars: { region: eu-west } }
environments:
  production: { track: { branch: main }, tree: fleet, hosts: [eu, web], vars: { domain: example.test } }
`);
    expect(problems).toEqual([]);
    expect(config!.environments.production!.hosts).toEqual(["web02", "db01", "web01"]);
    expect(Object.entries(config!.groups!)).toEqual([
      ["web", { hosts: ["web01", "web02"] }],
      ["eu", { hosts: ["web02", "db01"], vars: { region: "eu-west" } }],
    ]);
    expect(config!.hosts.web01!.vars).toEqual({ weight: 3 });
    expect(config!.environments.production!.vars).toEqual({ domain: "example.test" });
  });

  it("refuses a group naming an unknown host, a group named like a host, and a hosts: entry that is neither", () => {
    const { problems } = parseSourceConfig(`${inventory}groups:
  web: [web01, web09]
  db01: [db01]
  "7": [web01]
environments:
  production: { track: { branch: main }, tree: fleet, hosts: [web, nothing] }
`);
    expect(problems.map((problem) => [problem.field, problem.message])).toEqual([
      ["groups.7", "a group's name needs a character other than digits"],
      ["groups.web[1]", "host web09 is not in the inventory (hosts:)"],
      [
        "groups.db01",
        "db01 is a host and a group: an environment's hosts: and the config tree could not tell them apart; rename the group",
      ],
      ["environments.production.hosts[1]", "host nothing is not in the inventory (hosts:), nor a group (groups:)"],
    ]);
  });

  it("refuses a value whose name a template could not read", () => {
    const { problems } = parseSourceConfig(`${inventory}environments:
  production: { track: { branch: main }, tree: fleet, vars: { "server-name": x } }
`);
    expect(problems).toHaveLength(1);
    expect(problems[0]!.message).toContain("templates read vars.NAME");
  });
});
