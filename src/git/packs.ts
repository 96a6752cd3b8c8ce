import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { repoFs, sweepTempFiles, tempFile } from "./atomic-fs.js";
import { withLockFile } from "./lock.js";

/** Past this many packs, consolidatePacks merges them: isomorphic-git looks an object up in every pack, one after another. */
export const MAX_PACKS = 16;
/** isomorphic-git reads pack offsets as 31-bit numbers: a merged pack stays below 2 GiB. */
const MAX_MERGED_BYTES = 2 ** 31 - 1;
/** Lists the packs merged last time, whose .pack files are deleted the next time. */
const RETIRED = "tidemark-retired-packs";

interface IndexEntry {
  oid: Buffer;
  crc: number;
  offset: number;
}

/**
 * Merges a repository's packs into one when there are more than `maxPacks`
 * (a fetch with isomorphic-git adds one each time, and every lookup walks
 * them all). The packs' bytes are copied as they are, deltas included: an
 * offset delta points back inside its own pack, which stays whole. The index
 * is built from the packs' own indexes, so no object is inflated.
 *
 * The new pack and index are in place before the old indexes go; the old
 * .pack files stay until the next merge, for a reader in another process
 * that listed their indexes just before. Returns whether it merged.
 */
export async function consolidatePacks(gitdir: string, maxPacks = MAX_PACKS): Promise<boolean> {
  const dir = `${gitdir}/objects/pack`;
  return withLockFile(`${gitdir}/tidemark-packs.lock`, async () => {
    const names = await packNames(dir);
    if (names.length <= maxPacks) return false;
    sweepTempFiles(gitdir);
    const retired = (await readFile(`${gitdir}/${RETIRED}`, "utf8").catch(() => ""))
      .split("\n")
      .filter((name) => name && !names.includes(name));
    await Promise.all(retired.flatMap((name) => ["pack", "rev", "bitmap"].map((ext) => rm(`${dir}/${name}.${ext}`, { force: true }))));

    const sized = await Promise.all(names.map(async (name) => ({ name, bytes: (await stat(`${dir}/${name}.pack`)).size })));
    const picked: typeof sized = [];
    let total = 12 + 20;
    for (const pack of sized.sort((a, b) => a.bytes - b.bytes)) {
      if (total + pack.bytes - 32 > MAX_MERGED_BYTES) break;
      picked.push(pack);
      total += pack.bytes - 32;
    }
    if (picked.length < 2) return false;

    const merged = await mergePacks(
      gitdir,
      picked.map((pack) => pack.name),
    );
    await repoFs(gitdir).promises.writeFile(`${gitdir}/${RETIRED}`, picked.map((pack) => `${pack.name}\n`).join(""));
    await Promise.all(picked.filter((pack) => pack.name !== merged).map((pack) => rm(`${dir}/${pack.name}.idx`, { force: true })));
    return true;
  });
}

/** The packs that have an index (a pack being written has none yet), by name without extension. */
export async function packNames(dir: string): Promise<string[]> {
  const files = await readdir(dir).catch(() => [] as string[]);
  return files.filter((file) => file.endsWith(".idx")).map((file) => file.slice(0, -4));
}

/** Writes one pack holding every entry of `names`, with its index; returns its name. */
async function mergePacks(gitdir: string, names: string[]): Promise<string> {
  const dir = `${gitdir}/objects/pack`;
  const temp = tempFile(gitdir);
  const out = await open(`${temp}.pack`, "w");
  const hash = createHash("sha1");
  const write = async (chunk: Buffer) => {
    hash.update(chunk);
    await out.write(chunk);
  };
  const entries = new Map<string, IndexEntry>();
  try {
    const counts = await Promise.all(names.map(async (name) => (await readHeader(`${dir}/${name}.pack`)).readUInt32BE(8)));
    const header = Buffer.alloc(12);
    header.write("PACK", 0, "latin1");
    header.writeUInt32BE(2, 4);
    header.writeUInt32BE(
      counts.reduce((sum, count) => sum + count, 0),
      8,
    );
    await write(header);
    let base = 12;
    for (const name of names) {
      const pack = `${dir}/${name}.pack`;
      const { size } = await stat(pack);
      // An object in several packs is listed once; each copy stays, as an offset delta may point at it.
      for (const entry of readIndex(await readFile(`${dir}/${name}.idx`))) {
        const key = entry.oid.toString("hex");
        if (!entries.has(key)) entries.set(key, { ...entry, offset: entry.offset - 12 + base });
      }
      for await (const chunk of createReadStream(pack, { start: 12, end: size - 21 })) await write(chunk as Buffer);
      base += size - 32;
    }
    const checksum = hash.digest();
    await out.write(checksum);
    await out.sync();
    await out.close();
    const name = `pack-${checksum.toString("hex")}`;
    // The index last, written aside and renamed: a listed index always has its whole pack.
    await rename(`${temp}.pack`, `${dir}/${name}.pack`);
    await repoFs(gitdir).promises.writeFile(`${dir}/${name}.idx`, writeIndex([...entries.values()], checksum));
    return name;
  } catch (error) {
    await out.close().catch(() => undefined);
    await rm(`${temp}.pack`, { force: true });
    throw error;
  }
}

async function readHeader(path: string): Promise<Buffer> {
  const file = await open(path, "r");
  try {
    const header = Buffer.alloc(12);
    await file.read(header, 0, 12, 0);
    if (header.toString("latin1", 0, 4) !== "PACK") throw new Error(`${path} is not a git pack`);
    return header;
  } finally {
    await file.close();
  }
}

/** A version 2 pack index: fan-out table, sorted oids, CRC32s, 31-bit offsets, then 64-bit ones. */
function readIndex(idx: Buffer): IndexEntry[] {
  if (idx.readUInt32BE(0) !== 0xff744f63 || idx.readUInt32BE(4) !== 2) throw new Error("not a version 2 pack index");
  const count = idx.readUInt32BE(8 + 255 * 4);
  const oids = 8 + 256 * 4;
  const crcs = oids + 20 * count;
  const offsets = crcs + 4 * count;
  const large = offsets + 4 * count;
  return Array.from({ length: count }, (_, i) => {
    const small = idx.readUInt32BE(offsets + 4 * i);
    const offset = small & 0x80000000 ? Number(idx.readBigUInt64BE(large + 8 * (small & 0x7fffffff))) : small;
    return { oid: idx.subarray(oids + 20 * i, oids + 20 * i + 20), crc: idx.readUInt32BE(crcs + 4 * i), offset };
  });
}

function writeIndex(entries: IndexEntry[], packChecksum: Buffer): Buffer {
  entries.sort((a, b) => Buffer.compare(a.oid, b.oid));
  const fanout = Buffer.alloc(256 * 4);
  let below = 0;
  for (let byte = 0; byte < 256; byte++) {
    while (below < entries.length && entries[below]!.oid[0]! <= byte) below++;
    fanout.writeUInt32BE(below, byte * 4);
  }
  const crcs = Buffer.alloc(4 * entries.length);
  const offsets = Buffer.alloc(4 * entries.length);
  entries.forEach((entry, i) => {
    crcs.writeUInt32BE(entry.crc, 4 * i);
    offsets.writeUInt32BE(entry.offset, 4 * i);
  });
  const body = Buffer.concat([
    Buffer.from([0xff, 0x74, 0x4f, 0x63, 0, 0, 0, 2]),
    fanout,
    ...entries.map((entry) => entry.oid),
    crcs,
    offsets,
    packChecksum,
  ]);
  return Buffer.concat([body, createHash("sha1").update(body).digest()]);
}
