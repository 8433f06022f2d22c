import { route, type RouteSpec } from "./route";
import type { Metrics } from "../ops/metrics";

/** GET /metrics, Prometheus's text format, for an admin key or a key of the metrics role. */
export function metricsRoutes(metrics: Metrics): RouteSpec[] {
  return [
    route({
      method: "get",
      path: "/metrics",
      summary: "Prometheus metrics: decisions, latencies, Chron commits and checkpoints, tokens, authentication failures, rate limits, HTTP, the process",
      tags: ["system"],
      access: { roles: ["metrics"] },
      responses: { 200: { description: "The Prometheus text exposition format", contentType: "text/plain", schema: undefined } },
      handle: async () => {
        const { text, contentType } = await metrics.scrape();
        return { status: 200, body: text, contentType, headers: { "Cache-Control": "no-store" } };
      },
    }),
  ];
}
