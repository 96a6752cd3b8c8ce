import type { ErrorCode } from "./error-codes.js";

/**
 * Every error Tidemark raises on purpose: a stable code for scripts, a message
 * that says what happened, a hint that says what to do, and the cause it wraps.
 */
export class TidemarkError extends Error {
  override readonly name = "TidemarkError";

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly hint: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function describeError(error: unknown): string {
  if (error instanceof TidemarkError) {
    // The code goes on the first line, where a list of problems does not bury it.
    const [first, ...rest] = error.message.split("\n");
    const headline = first!.endsWith(":") ? `${first!.slice(0, -1)} (${error.code}):` : `${first} (${error.code})`;
    return [headline, ...rest, `  hint: ${error.hint}`].join("\n");
  }
  return error instanceof Error ? error.message : String(error);
}
