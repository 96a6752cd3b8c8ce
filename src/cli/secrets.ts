import { checkSecretFiles } from "../pipeline/check-secrets.js";
import { defaultBranch, resolveUserRef } from "../pipeline/read-source.js";
import { openMirror, secretsOpener, type Context } from "./context.js";
import { EXIT } from "./exit-codes.js";

/**
 * `tidemark secrets check [--ref REF] [--json]`: the secret files the
 * operator's identities cannot open, and those still encrypted to a retired
 * recipient; exit 2 if there is either, as nothing could be deployed safely.
 */
export async function secretsCheckCommand(ctx: Context, options: { ref?: string }): Promise<number> {
  const open = secretsOpener(ctx);
  const mirror = await openMirror(ctx);
  const source = options.ref ? await resolveUserRef(mirror, options.ref) : await defaultBranch(mirror);
  const files = await checkSecretFiles(mirror, source.commit, open);
  const bad = files.filter((file) => file.cannotDecrypt !== undefined || file.retired.length > 0);
  if (ctx.json) {
    ctx.out(`${JSON.stringify({ schema: "tidemark.secrets-check/v1", source, ok: bad.length === 0, files }, null, 2)}\n`);
    return bad.length === 0 ? EXIT.ok : EXIT.invalid;
  }
  const lines = [`${files.length} secret file${files.length === 1 ? "" : "s"} at ${source.commit.slice(0, 7)} (${source.ref})`];
  for (const file of files) {
    const problems = [
      ...(file.cannotDecrypt !== undefined ? [`cannot decrypt: ${file.cannotDecrypt}`] : []),
      ...(file.retired.length > 0 ? [`still encrypted to retired ${file.retired.join(", ")}`] : []),
    ];
    const recipients = file.recipients
      ? `${file.recipients.length} recipient${file.recipients.length === 1 ? "" : "s"}`
      : "recipients not named (age)";
    lines.push(
      `  ${problems.length > 0 ? "✗" : "✓"} ${file.file}  ${file.kind}, ${recipients}${problems.length > 0 ? `: ${problems.join("; ")}` : ""}`,
    );
  }
  if (files.some((file) => !file.recipients))
    lines.push("age files do not name their recipients: after a recipient is retired, re-encrypt them (age -R recipients.txt) to be sure");
  lines.push(bad.length === 0 ? "ok: the operator opens every one, none is encrypted to a retired recipient" : `${bad.length} to fix`);
  ctx.out(`${lines.join("\n")}\n`);
  return bad.length === 0 ? EXIT.ok : EXIT.invalid;
}
