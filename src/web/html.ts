/** Markup that is safe to place as it is: made only by `html`, so every value in it was escaped. */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (char) => ESCAPES[char]!);
}

/**
 * A template for markup: every value is escaped unless it is `Html` already,
 * so names from a config tree, unit output and commit messages are always
 * data. Arrays are joined; null, undefined and false render nothing.
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let text = strings[0] ?? "";
  values.forEach((value, i) => {
    text += render(value) + (strings[i + 1] ?? "");
  });
  return new Html(text);
}

function render(value: unknown): string {
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join("");
  if (value === null || value === undefined || value === false) return "";
  return escapeHtml(
    typeof value === "number" || typeof value === "boolean" ? String(value) : typeof value === "string" ? value : JSON.stringify(value),
  );
}

/** A path on this site: each part URL-encoded, so a name can never leave its segment. */
export function href(...parts: string[]): string {
  return `/${parts.map(encodeURIComponent).join("/")}`;
}
