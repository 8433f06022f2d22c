import { z } from "./openapi";
import { route, type RouteSpec } from "./route";
import { ServiceUnavailableError } from "../lib/errors";

export interface Readiness {
  policyVersion(): number | null;
  databaseAnswers(): Promise<boolean>;
  /** True once CLAIIM has begun to stop: not ready, so that load balancers send no more. */
  stopping(): boolean;
  /** Why Chron takes no records (a record CLAIIM did not write after its head), if it does not. */
  chronHalted?(): string | null;
  /** Why this process may hold state older than the bound (it has not applied other processes' changes), if it may. */
  behind?(): string | null;
}

export function systemRoutes(readiness: Readiness, openapi: () => unknown): RouteSpec[] {
  return [
    route({
      method: "get",
      path: "/healthz",
      summary: "Liveness: the process serves HTTP",
      tags: ["system"],
      access: { public: true },
      responses: { 200: { description: "Alive", schema: z.object({ status: z.literal("ok") }) } },
      handle: () => ({ status: 200, body: { status: "ok" } }),
    }),
    route({
      method: "get",
      path: "/readyz",
      summary: "Readiness: a policy bundle is active, the database answers, Chron takes records, and other processes' changes are applied",
      tags: ["system"],
      access: { public: true },
      responses: {
        200: { description: "Ready", schema: z.object({ status: z.literal("ready"), policy_version: z.number().int() }) },
        503: { description: "Not ready" },
      },
      handle: async () => {
        if (readiness.stopping()) throw new ServiceUnavailableError("not_ready", "CLAIIM is stopping");
        const version = readiness.policyVersion();
        if (version === null) throw new ServiceUnavailableError("not_ready", "no policy bundle is active");
        if (!(await readiness.databaseAnswers())) throw new ServiceUnavailableError("not_ready", "the database does not answer");
        const halted = readiness.chronHalted?.();
        if (halted) throw new ServiceUnavailableError("not_ready", halted);
        const behind = readiness.behind?.();
        if (behind) throw new ServiceUnavailableError("not_ready", behind);
        return { status: 200, body: { status: "ready", policy_version: version } };
      },
    }),
    route({
      method: "get",
      path: "/openapi.json",
      summary: "This API's OpenAPI 3.1 document",
      tags: ["system"],
      access: { public: true },
      responses: { 200: { description: "OpenAPI document" } },
      handle: () => ({ status: 200, body: openapi() }),
    }),
  ];
}
