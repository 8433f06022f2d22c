// What the evaluation pool promises its callers: limits, outcomes, handles and statistics.
import type { RegoValue } from "../runtime/value";

export interface EvaluationLimits {
  /** Deadline of one evaluation (CLAIIM_EVAL_TIMEOUT_MS). */
  timeoutMs: number;
  /** WebAssembly memory maximum of a policy, and heap limit of a worker (CLAIIM_EVAL_MAX_MEMORY_MB). */
  maxMemoryBytes: number;
  /** Worker threads (CLAIIM_EVAL_WORKERS). */
  workers: number;
}

export type Trip = "timeout" | "memory";

export type EvalOutcome =
  | { ok: true; value: RegoValue | undefined; ms: number }
  | { ok: false; kind: Trip | "error"; message: string; ms: number };

/** A policy loaded into every worker. */
export interface PolicyHandle {
  readonly id: number;
  /** True when the policy calls OPA's builtin module (reference.ts). */
  readonly usesReference: boolean;
}

export interface TripEvent {
  handle: number;
  kind: Trip;
  ms: number;
}

export interface PoolStats {
  workers: number;
  evaluations: number;
  timeouts: number;
  memory_exceeded: number;
  worker_restarts: number;
  queued: number;
}
