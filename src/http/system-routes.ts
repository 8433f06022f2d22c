import { z } from "./openapi";
import { route, type RouteSpec } from "./route";
import { ServiceUnavailableError } from "../lib/errors";
import type { ChronHealth } from "../ops/health";

export interface Readiness {
  policyVersion(): number | null;
  databaseAnswers(): Promise<boolean>;
  /** True once CLAIIM has begun to stop: not ready, so that load balancers send no more. */
  stopping(): boolean;
  /** The Chron writer and checkpointer: stuck or failing means not ready. */
  chron(): ChronHealth;
  /** Why Chron takes no records (a record CLAIIM did not write after its head), if it does not. */
  chronHalted?(): string | null;
  /** Why this process may hold state older than the bound (it has not applied other processes' changes), if it may. */
  behind?(): string | null;
}

const ChronHealthView = z.object({
  writer: z.object({ status: z.enum(["ok", "stuck", "failing"]), queued: z.number().int(), last_commit_at: z.string().nullable(), error: z.string().optional() }),
  checkpointer: z.object({
    status: z.enum(["ok", "stuck", "failing"]),
    last_signed_seq: z.number().int(),
    last_signed_at: z.string().nullable(),
    unsigned_records: z.number().int(),
    lag_seconds: z.number(),
    error: z.string().optional(),
  }),
});

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
      summary: "Readiness: not stopping, a policy bundle is active, the database answers, Chron takes records, its writer and checkpointer are neither stuck nor failing, and other processes' changes are applied",
      tags: ["system"],
      access: { public: true },
      responses: {
        200: { description: "Ready", schema: z.object({ status: z.literal("ready"), policy_version: z.number().int(), chron: ChronHealthView }) },
        503: { description: "Not ready (not_ready): the detail says why; `chron` says how the writer and the checkpointer fare" },
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
        const { ready, reason, ...chron } = readiness.chron();
        if (!ready) throw new ServiceUnavailableError("not_ready", reason ?? "Chron is not ready", { chron });
        return { status: 200, body: { status: "ready", policy_version: version, chron } };
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
