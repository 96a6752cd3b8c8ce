import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SourceMirror } from "../src/git/mirror.js";
import { TestBed } from "../test/bed/bed.js";
import { run } from "../test/bed/proc.js";
import { kib, median, ms, ratio } from "../test/helpers/report.js";
import type { Bench } from "./section.js";

/**
 * isomorphic-git (Tidemark's `SourceMirror`) against native git, fetching
 * over smart HTTP from the bed's forge a repository of 5,000 commits and
 * 2,000 files: a first fetch into an empty mirror, then fetches of a few new
 * commits. Side by side, the order alternating round by round; bytes counted
 * on a loopback proxy in front of the forge. `npm run bench -- git-fetch`.
 */
const COMMITS = 5000;
const FILES = 2000;
const NEW_COMMITS = 10;
const FIRST_ROUNDS = 3;
const INCREMENTAL_ROUNDS = 5;

// Native git as it comes: no settings from this machine's user or system config.
const GIT_ENV = { ...process.env, GIT_CONFIG_NOSYSTEM: "1", GIT_CONFIG_GLOBAL: "/dev/null", GIT_TERMINAL_PROMPT: "0" };
const git = (...args: string[]) => run("git", args, { env: GIT_ENV }).then((result) => result.stdout.trim());

const bench: Bench = async (log) => {
  const bed = await TestBed.up({ forge: true });
  const dir = mkdtempSync(join(tmpdir(), "tidemark-bench-fetch-"));
  const proxy = await countingProxy(new URL(bed.forge!.url));
  try {
    const source = join(dir, "source.git");
    await git("init", "--quiet", "--bare", "--initial-branch=main", source);
    let started = performance.now();
    await fastImport(source, history(0, COMMITS, true));
    log(`${COMMITS} commits of ${FILES} files generated in ${ms(performance.now() - started)}`);
    started = performance.now();
    const pushUrl = bed.forge!.pushUrl(bed.forgeRepo);
    await git("--git-dir", source, "push", "--quiet", pushUrl, "main");
    log(`pushed to the forge in ${ms(performance.now() - started)}`);
    const url = `${proxy.url}${new URL(bed.forge!.cloneUrl(bed.forgeRepo)).pathname}`;

    const tidemarkFetch = async (mirror: SourceMirror) => {
      await mirror.fetch();
      return (await mirror.refs()).branches.get("main");
    };
    const nativeFetch = async (gitdir: string) => {
      await git("--git-dir", gitdir, "fetch", "--quiet", "--prune", "origin");
      return git("--git-dir", gitdir, "rev-parse", "refs/heads/main");
    };
    /** Runs one side with the proxy's counters reset; checks that it got `head`. */
    const measure = async (name: string, head: string, fetch: () => Promise<string | undefined>) => {
      proxy.reset();
      const begun = performance.now();
      const got = await fetch();
      const sample = { ms: performance.now() - begun, bytes: proxy.received() };
      if (got !== head) throw new Error(`${name} fetched ${String(got)}, not ${head}`);
      return sample;
    };

    type Sample = { ms: number; bytes: number };
    const first: Record<"tidemark" | "native", Sample[]> = { tidemark: [], native: [] };
    const head = await git("--git-dir", source, "rev-parse", "main");
    let mirror: SourceMirror | undefined;
    let nativeDir = "";
    for (let round = 0; round < FIRST_ROUNDS; round++) {
      const roundDir = join(dir, `first${round}`);
      const sides = {
        tidemark: () =>
          measure("isomorphic-git", head, async () => tidemarkFetch((mirror = await SourceMirror.open(url, join(roundDir, "mirrors"))))),
        native: () =>
          measure("native git", head, async () => {
            nativeDir = join(roundDir, "native.git");
            await git("clone", "--quiet", "--mirror", url, nativeDir);
            return git("--git-dir", nativeDir, "rev-parse", "refs/heads/main");
          }),
      };
      for (const side of round % 2 === 0 ? (["tidemark", "native"] as const) : (["native", "tidemark"] as const))
        first[side].push(await sides[side]());
      log(`first fetch, round ${round + 1}: isomorphic-git ${ms(first.tidemark.at(-1)!.ms)}, native ${ms(first.native.at(-1)!.ms)}`);
      // The last round's mirrors stay for the incremental fetches.
      if (round < FIRST_ROUNDS - 1) rmSync(roundDir, { recursive: true, force: true });
    }

    const incremental: Record<"tidemark" | "native", Sample[]> = { tidemark: [], native: [] };
    for (let round = 0; round < INCREMENTAL_ROUNDS; round++) {
      const from = COMMITS + round * NEW_COMMITS;
      await fastImport(source, history(from, from + NEW_COMMITS, false));
      await git("--git-dir", source, "push", "--quiet", pushUrl, "main");
      const next = await git("--git-dir", source, "rev-parse", "main");
      const sides = {
        tidemark: () => measure("isomorphic-git", next, () => tidemarkFetch(mirror!)),
        native: () => measure("native git", next, () => nativeFetch(nativeDir)),
      };
      for (const side of round % 2 === 0 ? (["tidemark", "native"] as const) : (["native", "tidemark"] as const))
        incremental[side].push(await sides[side]());
      log(
        `fetch of ${NEW_COMMITS} new commits, round ${round + 1}: isomorphic-git ${ms(incremental.tidemark.at(-1)!.ms)}, native ${ms(incremental.native.at(-1)!.ms)}`,
      );
    }

    const medianOf = (samples: Sample[], key: keyof Sample) => median(samples.map((sample) => sample[key]));
    const row = (step: string, samples: Record<"tidemark" | "native", Sample[]>) => {
      const [tidemark, native] = [medianOf(samples.tidemark, "ms"), medianOf(samples.native, "ms")];
      return [
        step,
        ms(tidemark),
        ms(native),
        ratio(tidemark, native),
        kib(medianOf(samples.tidemark, "bytes")),
        kib(medianOf(samples.native, "bytes")),
      ];
    };
    const [firstTidemark, firstNative] = [medianOf(first.tidemark, "ms"), medianOf(first.native, "ms")];
    const [nextTidemark, nextNative] = [medianOf(incremental.tidemark, "ms"), medianOf(incremental.native, "ms")];
    return [
      {
        title: "Fetching the source repo: isomorphic-git vs native git",
        setup: `A repository of ${COMMITS.toLocaleString("en")} commits touching a tree of ${FILES.toLocaleString("en")} files (made with \`git fast-import\`), served by the bed's forge (\`git http-backend\` over smart HTTP on loopback). Tidemark's \`SourceMirror\` (isomorphic-git, protocol v1) against native git (\`git clone --mirror\`, then \`git fetch --prune\`, git's default protocol), taking turns: first fetch into an empty mirror, medians of ${FIRST_ROUNDS} rounds; fetch of ${NEW_COMMITS} commits pushed after, medians of ${INCREMENTAL_ROUNDS} rounds. Bytes are what the forge sent, counted on a loopback proxy both sides go through.`,
        header: [
          "fetch",
          "isomorphic-git",
          "native git",
          "isomorphic-git / native",
          "bytes received (isomorphic-git)",
          "bytes received (native)",
        ],
        rows: [
          row(`first fetch (${COMMITS.toLocaleString("en")} commits)`, first),
          row(`incremental (${NEW_COMMITS} new commits)`, incremental),
        ],
        notes: [
          `A first fetch takes ${ratio(firstTidemark, firstNative)} native git's time for the same pack (${kib(medianOf(first.tidemark, "bytes"))} against ${kib(medianOf(first.native, "bytes"))}): isomorphic-git indexes it in JavaScript, inflating and hashing every object, which is most of its CPU time in a profile of this benchmark. It happens once per mirror; the mirror is kept.`,
          `The fetch every deployment starts with, ${NEW_COMMITS} new commits, takes ${ratio(nextTidemark, nextNative)} native git's time (${ms(nextTidemark)} against ${ms(nextNative)}); native git starts several processes for each fetch (remote helper, pack reader, connectivity check), isomorphic-git none.`,
          `For those ${NEW_COMMITS} commits isomorphic-git receives ${ratio(medianOf(incremental.tidemark, "bytes"), medianOf(incremental.native, "bytes"))} the bytes native git does: isomorphic-git does not ask for a thin pack, so the first new version of each changed tree and file comes whole, not as a delta against what the mirror already has.`,
        ],
      },
    ];
  } finally {
    await proxy.close();
    rmSync(dir, { recursive: true, force: true });
    await bed.down();
  }
};
export default bench;

/** A file's content at a revision: a small config, one line of which changes. */
function content(file: number, revision: number): string {
  const lines = Array.from({ length: 16 }, (_, line) => `setting_${line} = ${file * 31 + line}`);
  return `# file ${file}\nrevision = ${revision}\n${lines.join("\n")}\n`;
}

const path = (file: number) =>
  `fleet/host${String(Math.floor(file / 50)).padStart(2, "0")}/app${Math.floor(file / 10) % 5}/file${file % 10}.conf`;

/**
 * A `git fast-import` stream of commits `from` to `to` (exclusive) on main:
 * the first of a fresh history adds every file, each other commit changes two.
 */
function history(from: number, to: number, fresh: boolean): string {
  const out: string[] = [];
  for (let n = from; n < to; n++) {
    const files = n === 0 ? Array.from({ length: FILES }, (_, file) => file) : [(n * 7) % FILES, (n * 13 + 1) % FILES];
    const message = `commit ${n}\n`;
    out.push(
      `commit refs/heads/main\ncommitter Bench <bench@example.invalid> ${1_700_000_000 + n * 60} +0000\ndata ${Buffer.byteLength(message)}\n${message}`,
    );
    if (n === from && !fresh) out.push("from refs/heads/main^0\n");
    for (const file of files) {
      const body = content(file, n);
      out.push(`M 100644 inline ${path(file)}\ndata ${Buffer.byteLength(body)}\n${body}\n`);
    }
  }
  return out.join("");
}

async function fastImport(gitdir: string, stream: string): Promise<void> {
  await run("git", ["--git-dir", gitdir, "fast-import", "--quiet"], { input: stream, env: GIT_ENV });
}

/** A TCP proxy on loopback in front of `target` that counts the bytes coming back from it. */
async function countingProxy(target: URL): Promise<{ url: string; reset(): void; received(): number; close(): Promise<void> }> {
  let received = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    }
    upstream.on("data", (chunk: Buffer) => (received += chunk.length));
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    reset: () => (received = 0),
    received: () => received,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
