/**
 * Responses checked against the API's own `/v1/openapi.json`: the document is validated as
 * OpenAPI 3.1 by @seriousme/openapi-schema-validator, its references resolved, and each response
 * body validated with Ajv (JSON Schema 2020-12, the dialect of OpenAPI 3.1) against the schema the
 * document gives for that operation and status.
 */
import { Validator } from "@seriousme/openapi-schema-validator";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

type Operation = { responses?: Record<string, { content?: Record<string, { schema?: object }> }> };
type Document = { paths: Record<string, Record<string, Operation>> };

export interface ResponseChecker {
  /** Throws unless `body` is what the document promises for this operation and status. */
  check(method: string, template: string, status: number, body: unknown): void;
  /** The same for a concrete path (`/v1/instances/demo-starter?limit=1`): its template is found. */
  checkPath(method: string, path: string, status: number, body: unknown): void;
  readonly paths: readonly string[];
}

export async function responseChecker(document: unknown): Promise<ResponseChecker> {
  const validator = new Validator();
  const result = await validator.validate(document as Parameters<Validator["validate"]>[0]);
  if (!result.valid) throw new Error(`/v1/openapi.json is not valid OpenAPI: ${JSON.stringify(result.errors).slice(0, 2000)}`);
  if (validator.version !== "3.1") throw new Error(`expected OpenAPI 3.1, got ${validator.version}`);
  const resolved = validator.resolveRefs() as Document;
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  (addFormats as unknown as (ajv: Ajv2020) => void)(ajv);
  const compiled = new Map<string, ValidateFunction>();
  const templates = Object.keys(resolved.paths).map((path) => ({ path, pattern: new RegExp(`^${path.replace(/\{\w+\}/g, "[^/]+")}$`) }));
  const checker: ResponseChecker = {
    paths: Object.keys(resolved.paths),
    checkPath(method, path, status, body) {
      const bare = path.split("?")[0]!;
      const template = templates.find((t) => t.pattern.test(bare) && resolved.paths[t.path]?.[method.toLowerCase()]);
      if (!template) throw new Error(`${method} ${bare} matches no operation of /v1/openapi.json`);
      checker.check(method, template.path, status, body);
    },
    check(method, template, status, body) {
      const path = template.replace(/:(\w+)/g, "{$1}");
      const operation = resolved.paths[path]?.[method.toLowerCase()];
      if (!operation) throw new Error(`${method} ${path} is not in /v1/openapi.json`);
      const schema = operation.responses?.[String(status)]?.content?.["application/json"]?.schema;
      if (!schema) throw new Error(`${method} ${path} does not document a JSON ${status} response`);
      const key = `${method} ${path} ${status}`;
      let validate = compiled.get(key);
      if (!validate) compiled.set(key, (validate = ajv.compile(schema)));
      if (!validate(body)) throw new Error(`${key}: body does not match the document: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 500)}`);
    },
  };
  return checker;
}
