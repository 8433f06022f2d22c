/*
 * Messages between the evaluation pool (main thread) and its workers. WARNING: results cross as
 * exact JSON text (value.ts writeJSON), never as structured clones of values, which would drop the
 * Num class of numbers that a double cannot hold.
 */

export interface WorkerSetup {
  maxMemoryBytes: number;
  /** OPA's builtin module, compiled once by the pool (null when it is not built). */
  reference: WebAssembly.Module | null;
  referenceFile: string | null;
  /** Int32 [job, phase] and BigInt64 [start, hrtime ns] of the evaluation in progress (job -1: idle). */
  progress: SharedArrayBuffer;
}

export type ToWorker =
  | { type: "load"; id: number; module: WebAssembly.Module; overrides: [number, string][]; data: string }
  | { type: "unload"; id: number }
  | { type: "eval"; jobs: EvalJob[] };

export interface EvalJob {
  id: number;
  /** Policies to evaluate in turn on the same input (phase = index): the active one, then the shadow. */
  policies: number[];
  /** Phases already done on another worker before that one was ended. */
  from: number;
  entrypoint: string;
  input: string | undefined;
  nowNs: bigint;
}

export type WorkerOutcome =
  | { ok: true; result: string | null; ms: number }
  | { ok: false; kind: "error" | "memory"; message: string; ms: number };

export type FromWorker =
  | { type: "ready" }
  | { type: "loaded"; id: number; reference: boolean }
  | { type: "load-failed"; id: number; message: string }
  | { type: "result"; job: number; phase: number; outcome: WorkerOutcome }
  /** The worker ends itself after a memory trip: its WebAssembly memory cannot shrink. */
  | { type: "retiring" };
