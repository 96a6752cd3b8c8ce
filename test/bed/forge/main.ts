import { writeFileSync, renameSync } from "node:fs";
import { parseArgs } from "node:util";
import { startForge } from "./server.js";

/** The forge as its own process: `node --import tsx main.ts --dir D --token T --ready-file F`. */
const { values } = parseArgs({ options: { dir: { type: "string" }, token: { type: "string" }, "ready-file": { type: "string" } } });
if (!values.dir || !values.token || !values["ready-file"]) {
  console.error("usage: main.ts --dir DIR --token TOKEN --ready-file FILE");
  process.exit(64);
}
const { server, port } = await startForge({ dir: values.dir, token: values.token });
// Written whole then renamed, so a reader never sees half of it.
writeFileSync(`${values["ready-file"]}.tmp`, JSON.stringify({ port, pid: process.pid }));
renameSync(`${values["ready-file"]}.tmp`, values["ready-file"]);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
