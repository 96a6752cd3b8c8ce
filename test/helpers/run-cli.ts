import { main } from "../../src/cli/main.js";

/** Runs the CLI in process, as a user would from a shell, and captures what it prints. */
export async function tidemark(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await main(["node", "tidemark", ...args], { env, out: (text) => (stdout += text), err: (text) => (stderr += text) });
  return { code, stdout, stderr };
}
