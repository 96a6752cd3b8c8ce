import { readHostTree } from "../config/config-tree.js";
import { DEFAULT_DRIFT, type SourceConfig } from "../core/config.js";
import type { HostDrift } from "../core/drift.js";
import { Semaphore } from "../core/semaphore.js";
import { readTreePair } from "../git/tree-reader.js";
import type { HostConnections } from "../remote/connections.js";
import { checkHostDrift, driftExpectation } from "../remote/drift-host.js";
import type { KnownHosts } from "../remote/known-hosts.js";
import type { Store } from "../store/store.js";
import { target } from "./deploy.js";

export interface DriftReport {
  environment: string;
  /** The environment's deployment the hosts were compared with (the store's newest). */
  checkedAt: Date;
  hosts: HostDrift[];
}

export interface DriftOptions {
  connections: HostConnections;
  knownHosts?: KnownHosts;
  /** Only these hosts; every host the store records a release for otherwise. */
  hosts?: readonly string[];
  /** Hash every file, not only those whose stat changed. */
  deep?: boolean;
  /** Hosts checked at once. */
  parallel?: number;
}

/**
 * Checks the environment's hosts against what the store records they run:
 * one exec per host, in parallel. A host with nothing recorded is not
 * checked: there is nothing it should have.
 */
export async function checkEnvironmentDrift(
  store: Store,
  config: SourceConfig,
  environment: string,
  options: DriftOptions,
): Promise<DriftReport> {
  const policy = config.environments[environment]?.drift ?? DEFAULT_DRIFT;
  const live = await store.liveHosts(environment);
  const wanted = options.hosts ? new Set(options.hosts) : undefined;
  const hosts = [...live].filter(([host, { tree }]) => tree !== null && (!wanted || wanted.has(host))).sort(([a], [b]) => (a < b ? -1 : 1));
  const limit = new Semaphore(options.parallel ?? config.rollout.maxParallel);
  const checked = await Promise.all(
    hosts.map(([host, { tree }]) =>
      limit.run(async (): Promise<HostDrift> => {
        const inventory = config.hosts[host];
        if (!inventory)
          return {
            host,
            state: "failed",
            findings: [],
            detail: `${host} is not in tidemark.yaml's hosts: there is no address to check it at`,
          };
        const expect = readTreePair({ reader: store.reader, oid: tree!, sizes: false }, undefined, `${host}/`).then(([dir]) =>
          driftExpectation(readHostTree(config, host, dir!, [])),
        );
        return checkHostDrift(options.connections, target(host, inventory, options.knownHosts), expect, {
          deep: options.deep === true,
          ignore: policy.ignore,
        });
      }),
    ),
  );
  return { environment, checkedAt: new Date(), hosts: checked };
}
