/**
 * Every error Tidemark raises on purpose: a stable code for scripts, a message
 * that says what happened, a hint that says what to do, and the cause it wraps.
 */
export class TidemarkError extends Error {
  override readonly name = "TidemarkError";

  constructor(
    readonly code: string,
    message: string,
    readonly hint: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function describeError(error: unknown): string {
  if (error instanceof TidemarkError) return `${error.message} (${error.code})\n  hint: ${error.hint}`;
  return error instanceof Error ? error.message : String(error);
}
