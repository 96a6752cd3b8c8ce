import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import addFormatsModule from "ajv-formats";

/**
 * GitHub's own descriptions, loaded once per forge: the official OpenAPI
 * description of the REST API (@octokit/openapi) and the community schemas of
 * webhook payloads (@octokit/webhooks-schemas). The stand-in checks every
 * request it receives and every payload it sends against them.
 */
const require = createRequire(import.meta.url);
// ajv-formats is CommonJS: under NodeNext its function arrives as the default's default.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv) => Ajv;

export interface OpenApiOperation {
  operationId: string;
  parameters?: Array<{ $ref?: string; name?: string; in?: string; required?: boolean; schema?: unknown }>;
  requestBody?: { required?: boolean; content: Record<string, { schema: unknown }> };
  responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
}

export interface OpenApiSpec {
  paths: Record<string, Record<string, OpenApiOperation>>;
  components: { parameters: Record<string, { name: string; in: string; required?: boolean; schema: unknown }> };
}

export class Schemas {
  readonly openapi: OpenApiSpec;
  private readonly ajv: Ajv;
  private readonly cache = new Map<string, ValidateFunction>();
  private readonly inline = new WeakMap<object, ValidateFunction>();

  constructor() {
    this.openapi = JSON.parse(readFileSync(require.resolve("@octokit/openapi/generated/api.github.com.json"), "utf8")) as OpenApiSpec;
    nullableWithoutType(this.openapi);
    const webhooks = JSON.parse(readFileSync(require.resolve("@octokit/webhooks-schemas/schema.json"), "utf8")) as { definitions: object };
    this.ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(this.ajv);
    // GitHub answers "" for a URL that was never given (a deployment status's target_url), where its description says format uri.
    const uri = this.ajv.formats.uri as RegExp | ((value: string) => boolean) | undefined;
    this.ajv.addFormat(
      "uri",
      (value: string) => value === "" || (typeof uri === "function" ? uri(value) : uri instanceof RegExp ? uri.test(value) : true),
    );
    this.ajv.addSchema({ $id: "openapi", paths: this.openapi.paths, components: this.openapi.components });
    this.ajv.addSchema({ $id: "webhooks", definitions: webhooks.definitions });
  }

  /** Validates a value against the schema at a JSON pointer; returns readable errors, empty when valid. */
  check(document: "openapi" | "webhooks", pointer: string[], value: unknown): string[] {
    const ref = `${document}#/${pointer.map((segment) => encodeURIComponent(segment.replaceAll("~", "~0").replaceAll("/", "~1"))).join("/")}`;
    let validate = this.cache.get(ref);
    if (!validate) {
      validate = this.ajv.compile({ $ref: ref });
      this.cache.set(ref, validate);
    }
    return validate(value) ? [] : (validate.errors ?? []).map(describe);
  }

  /** For small self-contained schemas, such as a parameter's. */
  checkValue(schema: object, value: unknown): string[] {
    let validate = this.inline.get(schema);
    if (!validate) {
      validate = this.ajv.compile(schema);
      this.inline.set(schema, validate);
    }
    return validate(value) ? [] : (validate.errors ?? []).map(describe);
  }
}

/**
 * GitHub's description marks some untyped schemas `nullable` (an account that
 * is a user or an enterprise, or null); Ajv refuses to compile those. Rewritten
 * in place to what they mean: the schema, or null.
 */
function nullableWithoutType(node: unknown): void {
  if (typeof node !== "object" || node === null) return;
  const schema = node as Record<string, unknown>;
  for (const child of Object.values(schema)) nullableWithoutType(child);
  if (schema.nullable !== true || "type" in schema) return;
  const { nullable: _nullable, ...rest } = schema;
  for (const key of Object.keys(schema)) delete schema[key];
  schema.anyOf = [rest, { type: "null" }];
}

function describe(error: ErrorObject): string {
  const where = error.instancePath === "" ? "(root)" : error.instancePath;
  const detail = error.params && Object.keys(error.params).length > 0 ? ` ${JSON.stringify(error.params)}` : "";
  return `${where} ${error.message ?? error.keyword}${detail}`;
}
