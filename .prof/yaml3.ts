import { Composer, Parser } from "yaml";
import { SourceConfigSchema } from "../src/config/source-config.js";
const hosts = Array.from({ length: 1000 }, (_, i) => `node${String(i).padStart(4, "0")}`);
const yaml = `environments:\n  production: { track: { branch: main }, tree: fleet }\nhosts:\n${hosts.map((h, i) => `  ${h}: { address: 127.0.0.1, port: ${20000 + i}, vars: { port: ${9000 + i} } }`).join("\n")}\n`;
for (let i = 0; i < 6; i++) {
  let t = performance.now(); const tokens = [...new Parser().parse(yaml)]; const a = performance.now() - t;
  t = performance.now(); const doc = [...new Composer({ uniqueKeys: true }).compose(tokens, true, yaml.length)][0]!; const b = performance.now() - t;
  t = performance.now(); const js = doc.toJS(); const c = performance.now() - t;
  t = performance.now(); SourceConfigSchema.safeParse(js); const d = performance.now() - t;
  console.log(a.toFixed(0), b.toFixed(0), c.toFixed(0), d.toFixed(0));
}
