/**
 * The OpenAPI 3.1 document as served at `/v1/openapi.json`: what @fastify/swagger generates from
 * the route schemas, with the one binary response (a backup download) given its real media type
 * instead of JSON. Pure.
 */
import { BINARY_DOWNLOAD } from "./routes/backups.ts";

type Media = Record<string, { schema?: { description?: string } }>;
type Responses = Record<string, { description?: string; content?: Media }>;
type Document = { paths?: Record<string, Record<string, { responses?: Responses }>> };

export function servedDocument(generated: unknown): unknown {
  const document = structuredClone(generated) as Document;
  for (const operations of Object.values(document.paths ?? {})) {
    for (const operation of Object.values(operations)) {
      for (const response of Object.values(operation.responses ?? {})) {
        const json = response.content?.["application/json"];
        if (json?.schema?.description !== BINARY_DOWNLOAD) continue;
        response.content = { "application/gzip": { schema: { description: BINARY_DOWNLOAD, type: "string", contentMediaType: "application/gzip" } as { description: string } } };
        response.description = BINARY_DOWNLOAD;
      }
    }
  }
  return document;
}
