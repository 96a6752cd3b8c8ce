import type { OpenApiOperation, OpenApiSpec, Schemas } from "./schemas.js";

export interface RouteMatch {
  template: string;
  method: string;
  operation: OpenApiOperation;
  params: Record<string, string>;
}

interface Route {
  template: string;
  pattern: RegExp;
  names: string[];
}

/** Finds the operation of GitHub's OpenAPI description that a request addresses, and checks the request against it. */
export class OpenApiRouter {
  private readonly routes: Route[];

  constructor(private readonly schemas: Schemas) {
    const spec: OpenApiSpec = schemas.openapi;
    this.routes = Object.keys(spec.paths)
      .map((template) => {
        const names: string[] = [];
        const multi = new Set(
          Object.values(spec.paths[template] ?? {}).flatMap((op) =>
            (op.parameters ?? []).filter((p) => (p as { "x-multi-segment"?: boolean })["x-multi-segment"]).map((p) => p.name),
          ),
        );
        const source = template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{(\w+)\}/g, (_, name: string) => {
          names.push(name);
          return multi.has(name) ? "(.+)" : "([^/]+)";
        });
        return { template, pattern: new RegExp(`^${source}$`), names };
      })
      // Literal segments win over parameters, as in GitHub's router.
      .sort((a, b) => a.names.length - b.names.length || b.template.length - a.template.length);
  }

  match(method: string, path: string): RouteMatch | undefined {
    const lower = method.toLowerCase();
    for (const route of this.routes) {
      const found = route.pattern.exec(path);
      const operation = found ? this.schemas.openapi.paths[route.template]?.[lower] : undefined;
      if (found && operation) {
        const params = Object.fromEntries(route.names.map((name, i) => [name, decodeURIComponent(found[i + 1] ?? "")]));
        return { template: route.template, method: lower, operation, params };
      }
    }
    return undefined;
  }

  /** Every way the request breaks the description: path and query parameters, then the JSON body. */
  validateRequest(match: RouteMatch, query: URLSearchParams, body: unknown, hasBody: boolean): string[] {
    const problems: string[] = [];
    for (const raw of match.operation.parameters ?? []) {
      const param = raw.$ref ? this.schemas.openapi.components.parameters[raw.$ref.split("/").pop() ?? ""] : raw;
      if (!param || (param.in !== "path" && param.in !== "query")) continue;
      const value = param.in === "path" ? match.params[param.name ?? ""] : query.get(param.name ?? "");
      if (value === null || value === undefined) {
        if (param.required) problems.push(`missing ${param.in} parameter ${param.name}`);
        continue;
      }
      const errors = this.schemas.checkValue(param.schema ?? {}, coerce(value, param.schema));
      problems.push(...errors.map((error) => `${param.in} parameter ${param.name}: ${error}`));
    }
    const content = match.operation.requestBody?.content["application/json"];
    if (content) {
      if (!hasBody && match.operation.requestBody?.required) problems.push("a JSON body is required");
      else if (hasBody)
        problems.push(
          ...this.schemas
            .check("openapi", ["paths", match.template, match.method, "requestBody", "content", "application/json", "schema"], body)
            .map((error) => `body ${error}`),
        );
    }
    return problems;
  }

  validateResponse(match: RouteMatch, status: number, body: unknown): string[] {
    if (!match.operation.responses[String(status)]?.content?.["application/json"]) return [];
    return this.schemas.check(
      "openapi",
      ["paths", match.template, match.method, "responses", String(status), "content", "application/json", "schema"],
      body,
    );
  }
}

function coerce(value: string, schema: unknown): unknown {
  const type = (schema as { type?: string } | undefined)?.type;
  if ((type === "integer" || type === "number") && /^-?\d+(\.\d+)?$/.test(value)) return Number(value);
  if (type === "boolean" && (value === "true" || value === "false")) return value === "true";
  return value;
}
