import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";

/**
 * The fs that isomorphic-git writes through: every file is written beside its
 * place and renamed into it, so a process killed mid-write never leaves a
 * truncated object or ref that git would later trust.
 */
export const atomicFs = {
  promises: {
    ...fsp,
    async writeFile(path: string, data: string | Uint8Array, options?: Parameters<typeof fsp.writeFile>[2]): Promise<void> {
      const temp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
      try {
        await fsp.writeFile(temp, data, options);
        await fsp.rename(temp, path);
      } catch (error) {
        await fsp.rm(temp, { force: true });
        throw error;
      }
    },
  },
};
