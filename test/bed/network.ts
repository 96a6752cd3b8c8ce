import { mkdirSync, readdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { run } from "./proc.js";

/**
 * The bed's private network: a bridge inside a namespace of its own, one veth
 * from the root namespace into it (so the operator, in the root namespace, reaches
 * only the bed's own /24), and one namespace per host plugged into the bridge.
 * Deleting the namespaces removes the bridge and every veth with them.
 */
const SUBNETS = "/run/tidemark-testbed/subnets";
const PREFIX = "10.213";

export interface BedNetwork {
  subnet: number;
  bridgeNs: string;
  gateway: string;
}

export const netnsPrefix = (bedId: string) => `tmk-${bedId}-`;

/** Reserves a free /24 (mkdir is atomic across processes) and builds the bridge. */
export async function createNetwork(bedId: string): Promise<BedNetwork> {
  await refuseRouteOverlap();
  mkdirSync(SUBNETS, { recursive: true });
  let subnet = -1;
  for (let candidate = 1; candidate < 255 && subnet < 0; candidate++) {
    try {
      mkdirSync(join(SUBNETS, String(candidate)));
      subnet = candidate;
    } catch {
      // taken by another bed
    }
  }
  if (subnet < 0) throw new Error(`no free test bed subnet left in ${SUBNETS}: run \`npm run testbed -- down --all\``);
  mkdirSync(join(SUBNETS, String(subnet), bedId));
  const bridgeNs = `${netnsPrefix(bedId)}net`;
  const gateway = `${PREFIX}.${subnet}.1`;
  const uplink = `tmk${bedId}`;
  await run("ip", ["netns", "add", bridgeNs]);
  await inNs(bridgeNs, "ip", "link", "set", "lo", "up");
  await inNs(bridgeNs, "ip", "link", "add", "br0", "type", "bridge");
  await inNs(bridgeNs, "ip", "link", "set", "br0", "up");
  await run("ip", ["link", "add", uplink, "type", "veth", "peer", "name", "up0", "netns", bridgeNs]);
  await inNs(bridgeNs, "ip", "link", "set", "up0", "master", "br0", "up");
  await run("ip", ["addr", "add", `${gateway}/24`, "dev", uplink]);
  await run("ip", ["link", "set", uplink, "up"]);
  return { subnet, bridgeNs, gateway };
}

/** A namespace for one host with its address on the bed's bridge; returns the address. */
export async function addHostNamespace(
  bedId: string,
  network: BedNetwork,
  index: number,
  name: string,
): Promise<{ netns: string; address: string }> {
  const netns = `${netnsPrefix(bedId)}${name}`;
  const address = `${PREFIX}.${network.subnet}.${10 + index}`;
  const port = `h${index}`;
  await run("ip", ["netns", "add", netns]);
  await run("ip", ["-n", network.bridgeNs, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns]);
  await inNs(network.bridgeNs, "ip", "link", "set", port, "master", "br0", "up");
  await inNs(netns, "ip", "link", "set", "lo", "up");
  await inNs(netns, "ip", "addr", "add", `${address}/24`, "dev", "eth0");
  await inNs(netns, "ip", "link", "set", "eth0", "up");
  return { netns, address };
}

/** Deletes every namespace of the bed and frees its subnet. */
export async function destroyNetwork(bedId: string): Promise<void> {
  for (const netns of await listNamespaces(netnsPrefix(bedId))) await run("ip", ["netns", "delete", netns], { allowFailure: true });
  await run("ip", ["link", "delete", `tmk${bedId}`], { allowFailure: true });
  for (const subnet of safeReaddir(SUBNETS)) {
    const owners = safeReaddir(join(SUBNETS, subnet));
    if (owners.includes(bedId)) {
      rmdirSync(join(SUBNETS, subnet, bedId));
      rmdirSync(join(SUBNETS, subnet));
    }
  }
}

export async function listNamespaces(prefix = "tmk-"): Promise<string[]> {
  const { stdout } = await run("ip", ["netns", "list"]);
  return stdout
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter((name) => name.startsWith(prefix));
}

function inNs(netns: string, ...command: string[]) {
  return run("ip", ["netns", "exec", netns, ...command]);
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** The bed's addresses must never shadow a route the machine already has. */
async function refuseRouteOverlap(): Promise<void> {
  const { stdout } = await run("ip", ["-4", "route", "show"]);
  const clash = stdout.split("\n").find((line) => line.startsWith(`${PREFIX}.`) && !/ dev tmk[0-9a-f]+ /.test(line));
  if (clash) throw new Error(`this machine already routes ${PREFIX}.0.0/16 (${clash.trim()}); the test bed will not share it`);
}
