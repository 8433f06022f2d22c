import { OpenAPIRegistry, OpenApiGeneratorV31 } from "@asteasolutions/zod-to-openapi";
import { z } from "../lib/zod";
import { PROBLEM_CODES, type ProblemCode } from "../lib/problems";

export { z };

export const Problem = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.enum(PROBLEM_CODES as [ProblemCode, ...ProblemCode[]]).openapi({ description: "Stable, machine-readable error code; each has one status" }),
    instance: z.string().optional(),
    request_id: z.string().optional(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .passthrough()
  .openapi("Problem", { description: "RFC 9457 problem details" });

/** The text rule (lib/text.ts) as JSON Schema can say it: no NUL. Lone surrogates cannot be written in UTF-8 JSON at all. */
const NO_NUL = "^[^\\u0000]*$";

/**
 * Writes the bounds the server applies into the schemas, so that the document states what it
 * accepts: the text rule into every string schema that does not already constrain its characters
 * (a pattern, a format, an enum), and into the names of every open-ended object's properties,
 * so that the document states what the server accepts.
 */
function withServerBounds(doc: unknown): void {
  const stack: unknown[] = [doc];
  while (stack.length) {
    const node = stack.pop();
    if (!node || typeof node !== "object") continue;
    if (Array.isArray(node)) {
      stack.push(...node);
      continue;
    }
    const schema = node as Record<string, unknown>;
    if (schema.type === "string" && schema.pattern === undefined && schema.format === undefined && schema.enum === undefined && schema.const === undefined) {
      schema.pattern = NO_NUL;
    }
    // zod's int() refuses what a double cannot hold exactly; the document says so.
    if (schema.type === "integer") {
      schema.maximum ??= Number.MAX_SAFE_INTEGER;
      schema.minimum ??= Number.MIN_SAFE_INTEGER;
    }
    if (schema.type === "object" && schema.additionalProperties !== undefined && schema.additionalProperties !== false && schema.propertyNames === undefined) {
      schema.propertyNames = { type: "string", pattern: NO_NUL };
    }
    stack.push(...Object.values(schema));
  }
}

export function generateDocument(registry: OpenAPIRegistry, version: string) {
  const doc = new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: "3.1.0",
    info: {
      title: "CLAIIM",
      version,
      description:
        "Identity control plane for AI agents: governed identity, policy before action, and Chron, the tamper-evident decision trail. " +
        "Every string in a request must be well-formed Unicode without NUL (else 400 invalid_text), and JSON bodies may nest at most 32 levels (else 400 json_too_deep).",
    },
  });
  withServerBounds(doc.paths);
  withServerBounds(doc.components);
  return doc;
}

export { OpenAPIRegistry };
