import { readEnvTree } from "../../src/config/config-tree.js";
import { parseSourceConfig } from "../../src/config/source-config.js";
import type { EnvTree, SourceConfig } from "../../src/core/config.js";
import type { Problem } from "../../src/core/problems.js";
import { memoryTree, type MemoryFile } from "./memory-tree.js";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP9WQ3gSqUztxtk1aQBwZi6P14HeSQ+AXA4AurcSCyfe";

/** A tidemark.yaml for tests; every address is loopback. */
export const CONFIG_YAML = `
environments:
  staging: { track: { branch: main }, tree: clusters/staging }
  production: { track: { tag: production }, tree: clusters/production }
hosts:
  web01: { address: 127.0.0.1, port: 2201, user: root, hostKey: "${KEY}" }
  web02: { address: 127.0.0.1, port: 2202, user: root, hostKey: "${KEY}" }
rollout: { maxParallel: 10, canary: 1, maxFailures: 1, onFailure: rollback-host }
`;

export function testConfig(yaml = CONFIG_YAML): SourceConfig {
  const { config, problems } = parseSourceConfig(yaml);
  if (!config || problems.length > 0) throw new Error(`test config is invalid: ${JSON.stringify(problems)}`);
  return config;
}

/** The staging environment's tree from files relative to its tree directory. */
export function stagingTree(files: Record<string, MemoryFile>, config = testConfig()): { tree: EnvTree; problems: Problem[] } {
  return readEnvTree(config, "staging", memoryTree(files));
}
