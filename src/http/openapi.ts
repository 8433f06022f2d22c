import { extendZodWithOpenApi, OpenAPIRegistry, OpenApiGeneratorV31 } from "@asteasolutions/zod-to-openapi";
import { z } from "zod";

// WARNING: must run before any schema calls .openapi(); every module that defines schemas imports z from here.
extendZodWithOpenApi(z);

export { z };

export const Problem = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string().openapi({ description: "Stable, machine-readable error code" }),
    instance: z.string().optional(),
    request_id: z.string().optional(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .passthrough()
  .openapi("Problem", { description: "RFC 9457 problem details" });

export function generateDocument(registry: OpenAPIRegistry, version: string) {
  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: "3.1.0",
    info: {
      title: "CLAIIM",
      version,
      description: "Identity control plane for AI agents: governed identity, policy before action, and Chron, the tamper-evident decision trail.",
    },
  });
}

export { OpenAPIRegistry };
