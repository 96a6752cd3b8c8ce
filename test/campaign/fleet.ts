import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestBed } from "../bed/bed.js";
import type { BedHost } from "../bed/types.js";
import { WorkRepo } from "../bed/work-repo.js";

/**
 * The campaign's source repo: environments `e0`, `e1`, ... each tracking the
 * branch of the same name, with its hosts' app under `envs/<env>/<host>/app`.
 * The app's unit logs each start to /var/log/campaign-starts, so that a unit
 * restarted twice for one version shows on the host.
 */
export interface FleetLayout {
  /** Environment name → its hosts. */
  environments: Map<string, BedHost[]>;
}

export function splitFleet(hosts: BedHost[], environments: number): FleetLayout {
  const map = new Map<string, BedHost[]>();
  hosts.forEach((host, i) => {
    const env = `e${i % environments}`;
    map.set(env, [...(map.get(env) ?? []), host]);
  });
  return { environments: map };
}

const UNIT = "[Unit]\nDescription=campaign app\n\n[Service]\nExecStart=/bin/sh /var/lib/tidemark/apps/app/current/run.sh\n";
const RUN = 'echo "$(cat /var/lib/tidemark/apps/app/current/version)" >> /var/log/campaign-starts\nexec sleep infinity\n';

/** The app's files on one host at a version; `systemd` false for light hosts (no units there). */
export function appFiles(env: string, host: string, version: string, systemd = true): Record<string, string> {
  const base = `envs/${env}/${host}/app`;
  return {
    [`${base}/version`]: `${version}\n`,
    ...(systemd
      ? {
          [`${base}/run.sh`]: RUN,
          [`${base}/systemd/app.service`]: UNIT,
          [`${base}/manifest.json`]: JSON.stringify({ systemd: { units_enabled: ["app.service"] } }),
        }
      : {}),
  };
}

export function fleetConfig(layout: FleetLayout, rollout = "rollout: { canary: 0, maxParallel: 10, maxFailures: 10 }"): string {
  const envs = [...layout.environments.keys()].map(
    (env) =>
      `  ${env}: { track: { branch: ${env} }, tree: envs/${env}, hosts: [${layout.environments
        .get(env)!
        .map((host) => host.name)
        .join(", ")}] }`,
  );
  const hosts = [...layout.environments.values()]
    .flat()
    .map((host) => `  ${host.name}: { address: ${host.address}, port: ${host.port}, hostKey: "${host.hostKey}" }`);
  return ["environments:", ...envs, "hosts:", ...hosts, rollout, ""].join("\n");
}

/** Pushes the config on `main` and each environment's branch at version `v0`. */
export async function seedFleet(bed: TestBed, layout: FleetLayout, systemd = true, rollout?: string): Promise<WorkRepo> {
  const work = await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo));
  const files: Record<string, string> = { "tidemark.yaml": fleetConfig(layout, rollout) };
  for (const [env, hosts] of layout.environments) for (const host of hosts) Object.assign(files, appFiles(env, host.name, "v0", systemd));
  await work.commit(files, "v0 everywhere");
  await work.push("main", ...[...layout.environments.keys()].map((env) => `main:refs/heads/${env}`));
  return work;
}

/**
 * A person merging to one environment's branch: a clone of their own, and
 * each change made on top of the branch as it is now. Pushers of one branch
 * take turns, as a merge queue has them do: what Tidemark sees is one push
 * after another on each branch, all branches at once.
 */
export class Pusher {
  private static readonly turns = new Map<string, Promise<unknown>>();

  private constructor(
    private readonly work: WorkRepo,
    private readonly env: string,
  ) {}

  static async clone(bed: TestBed, env: string): Promise<Pusher> {
    return new Pusher(await WorkRepo.create(bed.forge!.pushUrl(bed.forgeRepo)), env);
  }

  /** Sets the version of every host of the environment, in its turn on the branch; returns the pushed commit. */
  push(hosts: BedHost[], version: string, systemd = true): Promise<{ sha: string; refused: number }> {
    const turn = (Pusher.turns.get(this.env) ?? Promise.resolve()).then(() => this.pushNow(hosts, version, systemd));
    Pusher.turns.set(
      this.env,
      turn.catch(() => undefined),
    );
    return turn;
  }

  private async pushNow(hosts: BedHost[], version: string, systemd: boolean): Promise<{ sha: string; refused: number }> {
    for (let refused = 0; ; refused++) {
      await this.work.git("fetch", "--quiet", "origin", this.env);
      await this.work.git("checkout", "--quiet", "-B", this.env, "FETCH_HEAD");
      const files = Object.assign({}, ...hosts.map((host) => appFiles(this.env, host.name, version, systemd))) as Record<string, string>;
      const sha = await this.work.commit(files, `${this.env}: ${version}`);
      try {
        await this.work.push(`${this.env}:refs/heads/${this.env}`);
        return { sha, refused };
      } catch (error) {
        // Only a push from outside the campaign moves the branch meanwhile: make the change again on top.
        if (refused > 5) throw error;
      }
    }
  }

  remove(): void {
    this.work.remove();
  }
}

/** A copy of the shared store remote, to read every worker's records from one place. */
export function cloneStore(url: string): { path: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "tidemark-campaign-store-"));
  execFileSync("git", ["clone", "--quiet", "--mirror", url, join(dir, "store.git")]);
  return { path: join(dir, "store.git"), remove: () => rmSync(dir, { recursive: true, force: true }) };
}
