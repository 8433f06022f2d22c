// Prometheus metrics (prom-client), in a registry of this CLAIIM's own: two servers in one process
// (the tests) never share counters. Most figures are read from what the services already do, so the
// decision path carries no extra work: decisions, tokens and Chron batches are counted from the
// Chron writer's commits, evaluations from the pool's outcomes, HTTP from the access log's hook.
import client, { type Registry } from "prom-client";

/** What the metrics read of a committed Chron row (its index columns). */
export interface CommittedRow {
  kind: string;
  decision: string | null;
  policyVersion: number | null;
  /** A decision's action, or an event's type. */
  action: string | null;
}

/** What the metrics read when they are scraped: the Chron writer and checkpointer, the evaluation pool. */
export interface MetricSources {
  chron(): { queued: number; unsignedRecords: number; checkpointLagSeconds: number };
  evaluation(): { evaluations: number; timeouts: number; memory_exceeded: number; worker_restarts: number; queued: number };
}

// Buckets in seconds: decisions answer in milliseconds; the tail matters as much as the median.
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

export class Metrics {
  readonly registry: Registry = new client.Registry();
  private readonly decisions: client.Counter<"decision" | "policy_version">;
  private readonly decisionSeconds: client.Histogram;
  private readonly evaluationSeconds: client.Histogram<"outcome">;
  private readonly batchRecords: client.Histogram;
  private readonly commitSeconds: client.Histogram<"outcome">;
  private readonly tokens: client.Counter;
  private readonly authFailures: client.Counter<"code">;
  private readonly requests: client.Counter<"method" | "route" | "status">;
  private readonly requestSeconds: client.Histogram<"method" | "route">;
  private readonly rateLimited: client.Counter<"limit">;

  constructor(sources: MetricSources, options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.decisions = new client.Counter({
      name: "claiim_decisions_total",
      help: "Decisions recorded in Chron, by outcome (allow, deny, approval_required) and the policy version that decided",
      labelNames: ["decision", "policy_version"],
      registers,
    });
    this.decisionSeconds = new client.Histogram({
      name: "claiim_decision_duration_seconds",
      help: "Time to answer POST /v1/decisions: validate, authenticate, evaluate, record in Chron, reply",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.evaluationSeconds = new client.Histogram({
      name: "claiim_policy_evaluation_duration_seconds",
      help: "Time a policy evaluation took in its worker (decisions, shadow, replay, the budget gate), by outcome (ok, error, timeout, memory)",
      labelNames: ["outcome"],
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers,
    });
    this.batchRecords = new client.Histogram({ name: "claiim_chron_batch_records", help: "Records per Chron commit (group commit)", buckets: BATCH_BUCKETS, registers });
    this.commitSeconds = new client.Histogram({
      name: "claiim_chron_commit_duration_seconds",
      help: "Time a Chron commit took, by outcome (ok, failed)",
      labelNames: ["outcome"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.tokens = new client.Counter({ name: "claiim_tokens_issued_total", help: "Access tokens issued by /oauth/token (each recorded in Chron)", registers });
    this.authFailures = new client.Counter({
      name: "claiim_authentication_failures_total",
      help: "Requests refused for their credential (401), by problem code",
      labelNames: ["code"],
      registers,
    });
    this.requests = new client.Counter({
      name: "claiim_http_requests_total",
      help: "HTTP requests answered, by method, route (as declared, e.g. /v1/agents/{id}) and status",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.requestSeconds = new client.Histogram({
      name: "claiim_http_request_duration_seconds",
      help: "Time to answer an HTTP request, by method and route",
      labelNames: ["method", "route"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.rateLimited = new client.Counter({
      name: "claiim_rate_limited_total",
      help: "Requests refused with 429 by a rate limit (not recorded in Chron one by one), by limit",
      labelNames: ["limit"],
      registers,
    });
    new client.Gauge({
      name: "claiim_chron_queue_records",
      help: "Appends waiting for the Chron writer's next commit",
      registers,
      collect() {
        this.set(sources.chron().queued);
      },
    });
    new client.Gauge({
      name: "claiim_chron_unsigned_records",
      help: "Committed Chron records after the last signed checkpoint (the unsigned tail)",
      registers,
      // Worker mode sums every worker's figures; each sees the one chain's tail: the largest view counts.
      aggregator: "max",
      collect() {
        this.set(sources.chron().unsignedRecords);
      },
    });
    new client.Gauge({
      name: "claiim_chron_checkpoint_lag_seconds",
      help: "How long the oldest record of the unsigned tail has waited for a signed checkpoint (0 when none waits)",
      registers,
      aggregator: "max",
      collect() {
        this.set(sources.chron().checkpointLagSeconds);
      },
    });
    const pool = (name: keyof ReturnType<MetricSources["evaluation"]>, metric: string, help: string, kind: "counter" | "gauge") => {
      const Type = kind === "counter" ? client.Counter : client.Gauge;
      new Type({
        name: metric,
        help,
        registers,
        collect(this: client.Counter | client.Gauge) {
          const value = sources.evaluation()[name];
          // A counter can only be read as a total: reset, then add the pool's own count.
          this.reset();
          (this as client.Gauge).inc(value);
        },
      });
    };
    pool("evaluations", "claiim_policy_evaluations_total", "Policy evaluations run by the worker pool", "counter");
    pool("timeouts", "claiim_policy_evaluation_timeouts_total", "Evaluations stopped at their deadline (CLAIIM_EVAL_TIMEOUT_MS)", "counter");
    pool("memory_exceeded", "claiim_policy_evaluation_memory_exceeded_total", "Evaluations stopped at their memory limit (CLAIIM_EVAL_MAX_MEMORY_MB)", "counter");
    pool("worker_restarts", "claiim_policy_worker_restarts_total", "Evaluation workers ended and replaced", "counter");
    pool("queued", "claiim_policy_evaluations_queued", "Evaluations waiting for a worker", "gauge");
    if (options.processMetrics !== false) client.collectDefaultMetrics({ register: this.registry, prefix: "claiim_" });
  }

  /** After every Chron commit: the decisions and tokens it recorded, its size and how long it took. */
  committed(rows: readonly CommittedRow[], seconds: number): void {
    this.batchRecords.observe(rows.length);
    this.commitSeconds.observe({ outcome: "ok" }, seconds);
    for (const row of rows) {
      if (row.kind === "decision") this.decisions.inc({ decision: row.decision ?? "unknown", policy_version: row.policyVersion === null ? "none" : String(row.policyVersion) });
      else if (row.action === "token.issued") this.tokens.inc();
    }
  }

  commitFailed(seconds: number): void {
    this.commitSeconds.observe({ outcome: "failed" }, seconds);
  }

  evaluated(o: { ok: true; ms: number } | { ok: false; kind: string; ms: number }): void {
    this.evaluationSeconds.observe({ outcome: o.ok ? "ok" : o.kind }, o.ms / 1000);
  }

  /** After every HTTP response. `route` is the declared route, or "unmatched"; `code` the problem's, if any. */
  answered(method: string, route: string, status: number, seconds: number, code: string | undefined): void {
    this.requests.inc({ method, route, status: String(status) });
    this.requestSeconds.observe({ method, route }, seconds);
    if (route === "/v1/decisions" && method === "POST" && status === 200) this.decisionSeconds.observe(seconds);
    if (status === 401) this.authFailures.inc({ code: code ?? "unknown" });
  }

  limited(limit: string): void {
    this.rateLimited.inc({ limit });
  }

  /** In worker mode: the figures of every worker, summed (src/cluster/), instead of this process's alone. */
  private clusterWide: (() => Promise<string>) | null = null;

  /** Scrapes answer with `scrape`'s text: every worker's figures, summed by the worker mode primary. */
  scrapeAcross(scrape: () => Promise<string>): void {
    this.clusterWide = scrape;
  }

  /** The exposition text, and its content type. */
  async scrape(): Promise<{ text: string; contentType: string }> {
    return { text: this.clusterWide ? await this.clusterWide() : await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
