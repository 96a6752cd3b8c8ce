import { atSource } from "./layer-environment.js";
import { effectiveEnvironments } from "./plan-environment.js";
import { envApps, openSecrets } from "./plan-secrets.js";
import { readSourceConfig } from "./read-source.js";
import type { SourceMirror } from "../git/mirror.js";
import type { SecretKind, SecretOpener } from "../secrets/secret-files.js";
import { sopsRecipients } from "../secrets/sops.js";

/** One secret file of the source repo, as `tidemark secrets check` reports it. */
export interface SecretFileCheck {
  /** Its path in the source repo. */
  file: string;
  kind: SecretKind;
  /** Environments that deploy it. */
  environments: string[];
  /** Why the operator's identities do not open it; absent when they do. */
  cannotDecrypt?: string;
  /** The age recipients a SOPS file is encrypted to; absent for an age file, which does not name them. */
  recipients?: string[];
  /** Of those, the ones tidemark.yaml lists under secrets.retired. */
  retired: string[];
}

/**
 * Every secret file that some environment deploys at a commit, each opened
 * with the operator's identities and, for SOPS files, its recipients read
 * from its metadata and compared with the retired ones.
 */
export async function checkSecretFiles(mirror: SourceMirror, commit: string, open: SecretOpener): Promise<SecretFileCheck[]> {
  const config = await readSourceConfig(mirror, commit);
  const retired = new Set(config.secrets?.retired ?? []);
  const checks = new Map<string, SecretFileCheck>();
  for (const { name, tree, layered, env } of await effectiveEnvironments(mirror.reader, config, await mirror.reader.commitTree(commit))) {
    if (!layered || !env) continue;
    for (const found of (await openSecrets(envApps(tree, env), layered.objects, open)).files) {
      // A file of a shared layer is one file, however many hosts get it.
      const file = atSource(layered, tree, { file: found.file, message: "" }).file;
      const known = checks.get(file);
      if (known) {
        if (!known.environments.includes(name)) known.environments.push(name);
        continue;
      }
      const recipients = found.kind === "age" ? undefined : sopsRecipients(found.kind, await layered.objects.blob(found.oid));
      const named = Array.isArray(recipients) ? recipients : undefined;
      checks.set(file, {
        file,
        kind: found.kind,
        environments: [name],
        ...(found.why !== undefined ? { cannotDecrypt: found.why } : {}),
        ...(named ? { recipients: named } : {}),
        retired: (named ?? []).filter((recipient) => retired.has(recipient)),
      });
    }
  }
  return [...checks.values()].sort((a, b) => (a.file < b.file ? -1 : 1));
}
