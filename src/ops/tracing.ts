// Traces with OpenTelemetry, off unless an OTLP endpoint is configured (the standard
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT). One server span per HTTP
// request, a child of the caller's W3C traceparent when it sends one; spans leave in batches over
// OTLP/HTTP. The provider is this CLAIIM's own, not the process-wide one: starting CLAIIM does not
// change what other code in the process traces.
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span, type Tracer } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider } from "@opentelemetry/sdk-trace";
import type { IncomingHttpHeaders } from "node:http";

export interface TracingSettings {
  /** Where spans go (OTLP/HTTP, e.g. http://collector:4318/v1/traces); null: tracing is off. */
  endpoint: string | null;
  /** Headers sent with every export (OTEL_EXPORTER_OTLP_HEADERS: key=value,key=value). */
  headers: Record<string, string>;
  serviceName: string;
  /** The share of new traces recorded (a caller's sampled traceparent is always followed). */
  sampleRatio: number;
}

/** The trace a piece of work belongs to, as OPA's decision logs name it. */
export interface TraceRef {
  trace_id: string;
  span_id: string;
}

const propagator = new W3CTraceContextPropagator();
const headerGetter = {
  keys: (carrier: IncomingHttpHeaders) => Object.keys(carrier),
  get: (carrier: IncomingHttpHeaders, key: string) => carrier[key],
};

export class Tracing {
  private readonly provider: TracerProvider | null;
  private readonly tracer: Tracer | null;

  constructor(settings: TracingSettings, version: string) {
    if (!settings.endpoint) {
      this.provider = null;
      this.tracer = null;
      return;
    }
    this.provider = new TracerProvider({
      resource: resourceFromAttributes({ "service.name": settings.serviceName, "service.version": version }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(settings.sampleRatio) }),
      spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: settings.endpoint, headers: settings.headers }), scheduledDelayMillis: 1000 })],
    });
    this.tracer = this.provider.getTracer("claiim", version);
  }

  get enabled(): boolean {
    return this.tracer !== null;
  }

  /** A server span for an HTTP request, continuing the caller's trace when its traceparent is valid. */
  startRequest(method: string, path: string, headers: IncomingHttpHeaders): Span | null {
    if (!this.tracer) return null;
    const parent = propagator.extract(ROOT_CONTEXT, headers, headerGetter);
    return this.tracer.startSpan(`${method} ${path}`, { kind: SpanKind.SERVER, attributes: { "http.request.method": method, "url.path": path } }, parent);
  }

  /** A span inside a request's (for the steps of a decision), or null when tracing is off. */
  startChild(parent: Span | null, name: string): Span | null {
    if (!this.tracer || !parent) return null;
    return this.tracer.startSpan(name, {}, trace.setSpan(context.active(), parent));
  }

  /** The ids a record carries: only for a sampled span, since others are exported nowhere. */
  static ref(span: Span | null | undefined): TraceRef | undefined {
    const ctx = span?.spanContext();
    if (!ctx || !(ctx.traceFlags & 1)) return undefined;
    return { trace_id: ctx.traceId, span_id: ctx.spanId };
  }

  /** Ends a request's span, named after its route as declared (low cardinality, as OpenTelemetry asks). */
  static end(span: Span | null | undefined, method: string, route: string, status: number, attributes: Record<string, string | number | boolean> = {}): void {
    if (!span) return;
    span.updateName(`${method} ${route}`);
    span.setAttributes({ "http.response.status_code": status, "http.route": route, ...attributes });
    if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  }

  /** Sends what is buffered, then stops. */
  async shutdown(): Promise<void> {
    await this.provider?.shutdown();
  }
}
