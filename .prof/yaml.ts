import { parseSourceConfig } from "../src/config/source-config.js";
const hosts = Array.from({ length: 1000 }, (_, i) => `node${String(i).padStart(4, "0")}`);
const yaml = `environments:\n  production: { track: { branch: main }, tree: fleet }\nhosts:\n${hosts.map((h, i) => `  ${h}: { address: 127.0.0.1, port: ${20000 + i}, vars: { port: ${9000 + i} } }`).join("\n")}\n`;
for (let i = 0; i < 8; i++) { const t = performance.now(); parseSourceConfig(yaml); console.log((performance.now() - t).toFixed(1)); }
