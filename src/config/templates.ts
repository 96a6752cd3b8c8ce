import { filters, Liquid, ParseError, Tag, UndefinedVariableError, type LiquidError, type TagToken, type TopLevelToken } from "liquidjs";
import type { Vars } from "../core/config.js";
import type { Problem } from "../core/problems.js";

/**
 * `X.tmpl` files, rendered per host with LiquidJS on the operator before
 * planning: the rendered bytes are what is hashed, planned and deployed.
 * Strict: a missing value or an unknown filter is an error, never an empty
 * string. Closed: no tag reads a file (include, render, layout are refused),
 * and `date` refuses the clock, so the same inputs always render the same bytes.
 * Bounded: a pull request's template is rendered for its preview, so a loop
 * that runs away is cut off, not left to stall the operator.
 */

/** What a template sees. */
export interface TemplateContext {
  host: { name: string; address: string; groups: string[] };
  environment: string;
  vars: Vars;
}

const FILE_TAGS = ["include", "render", "layout"] as const;
const CLOCK = new Set(["now", "today"]);

class FileTag extends Tag {
  constructor(token: TagToken, remain: TopLevelToken[], liquid: Liquid) {
    super(token, remain, liquid);
    throw new Error(`{% ${token.name} %} reads other files, which templates may not: write the text into this template`);
  }

  *render(): Generator<unknown, void, unknown> {}
}

const liquid = new Liquid({
  strictVariables: true,
  strictFilters: true,
  ownPropertyOnly: true,
  timezoneOffset: 0,
  parseLimit: 16 * 2 ** 20,
  renderLimit: 2_000,
  memoryLimit: 64 * 2 ** 20,
  // No lookup ever reaches the disk: the file tags are refused at parse time, and this is the only place they could look.
  templates: {},
});
for (const name of FILE_TAGS) liquid.registerTag(name, FileTag);
liquid.registerFilter("date", function (this: unknown, value: unknown, ...args: unknown[]) {
  if (typeof value === "string" && CLOCK.has(value.trim().toLowerCase()))
    throw new Error(`date of "${value}" reads the operator's clock, so the file would change on every render: give the date in vars`);
  return (filters.date as (...all: unknown[]) => unknown).call(this, value, ...args);
});

/** One template rendered, or the problem with it at its line and column. */
export function renderTemplate(file: string, source: string, context: TemplateContext): { bytes: Buffer } | { problem: Problem } {
  try {
    return { bytes: Buffer.from(liquid.renderSync(liquid.parse(source), context) as string, "utf8") };
  } catch (error) {
    return { problem: templateProblem(file, error) };
  }
}

function templateProblem(file: string, error: unknown): Problem {
  const liquidError = error as Partial<LiquidError>;
  const [line, column] = liquidError.token?.getPosition() ?? [];
  const field = line === undefined ? undefined : `line ${line}, column ${column}`;
  // liquidjs appends the position to its messages, and wraps errors thrown in tags and filters.
  const cause = liquidError.originalError?.message ?? liquidError.message ?? String(error);
  const reason = cause
    .replace(/, line:\d+, col:\d+$/, "")
    .replace(/^memory alloc limit exceeded$/, "the template makes more than 64 MiB: a loop or a value grows without bound")
    .replace(/^template render limit exceeded$/, "the template took more than 2 s to render: a loop runs too long");
  const missing = error instanceof UndefinedVariableError ? /^undefined variable: (.*)$/.exec(reason)?.[1] : undefined;
  const message = missing?.startsWith("vars.")
    ? `${missing} has no value: set it in vars: of the environment, one of the host's groups or the host in tidemark.yaml (a missing value is an error, never an empty string)`
    : missing
      ? `${missing} is not a value templates see: they see host.name, host.address, host.groups, environment and vars.*`
      : error instanceof ParseError && /^undefined filter: /.test(reason)
        ? `${reason.replace(/^undefined filter: /, "no filter named ")}: see the filters LiquidJS has`
        : reason;
  return { file, ...(field ? { field } : {}), message };
}
