import { parseDocument, Parser } from "yaml";
const hosts = Array.from({ length: 1000 }, (_, i) => `node${String(i).padStart(4, "0")}`);
const yaml = `environments:\n  production: { track: { branch: main }, tree: fleet }\nhosts:\n${hosts.map((h, i) => `  ${h}: { address: 127.0.0.1, port: ${20000 + i}, vars: { port: ${9000 + i} } }`).join("\n")}\n`;
const time = (label: string, f: () => unknown) => { const t = performance.now(); f(); return `${label} ${(performance.now() - t).toFixed(1)}`; };
for (let i = 0; i < 6; i++) {
  let doc: ReturnType<typeof parseDocument>;
  console.log(time("tokens", () => [...new Parser().parse(yaml)]), time("doc", () => (doc = parseDocument(yaml, { uniqueKeys: true, prettyErrors: false }))), time("toJS", () => doc.toJS()));
}
