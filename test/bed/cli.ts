import { parseArgs } from "node:util";
import { destroyBed, gcBeds, listBeds, TestBed } from "./bed.js";
import { ensureRootfs } from "./rootfs.js";

const USAGE = `usage: npm run testbed -- COMMAND [options]

  up [--hosts N] [--kind systemd|light] [--light N] [--no-redis] [--no-forge] [--aof]
        bring up a bed that stays until \`down\`; prints how to reach it as JSON
  down ID | --all      remove a bed (or every bed) with all its processes, namespaces and cgroups
  list                 the beds on this machine
  gc                   remove beds whose owner process died (e.g. a killed test run)
  rootfs               build (or find) the cached root fs of the systemd hosts`;

const [command, ...rest] = process.argv.slice(2);
const { values, positionals } = parseArgs({
  args: rest,
  allowPositionals: true,
  options: {
    hosts: { type: "string", default: "3" },
    kind: { type: "string", default: "systemd" },
    light: { type: "string", default: "0" },
    "no-redis": { type: "boolean", default: false },
    "no-forge": { type: "boolean", default: false },
    aof: { type: "boolean", default: false },
    all: { type: "boolean", default: false },
  },
});

function count(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 500)
    throw new Error(`--${name} takes a whole number from 0 to 500, not ${JSON.stringify(value)}`);
  return n;
}

async function main(): Promise<number> {
  switch (command) {
    case "up": {
      if (values.kind !== "systemd" && values.kind !== "light") throw new Error(`--kind is systemd or light, not ${values.kind}`);
      const hosts = count("hosts", values.hosts);
      const bed = await TestBed.up({
        systemdHosts: values.kind === "systemd" ? hosts : 0,
        lightHosts: (values.kind === "light" ? hosts : 0) + count("light", values.light),
        redis: values["no-redis"] ? false : { aof: values.aof },
        forge: !values["no-forge"],
        owner: null,
      });
      console.log(JSON.stringify({ ...bed.describe(), down: `npm run testbed -- down ${bed.id}` }, null, 2));
      return 0;
    }
    case "down":
      if (values.all) console.error(`removed: ${(await gcBeds({ all: true })).join(" ") || "nothing"}`);
      else if (positionals[0]) await destroyBed(positionals[0]);
      else throw new Error("down takes a bed id or --all");
      return 0;
    case "list":
      console.log(JSON.stringify(listBeds(), null, 2));
      return 0;
    case "gc":
      console.error(`removed: ${(await gcBeds()).join(" ") || "nothing"}`);
      return 0;
    case "rootfs":
      console.log(await ensureRootfs());
      return 0;
    default:
      console.error(USAGE);
      return command === undefined || command === "help" || command === "--help" ? 0 : 64;
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`testbed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
