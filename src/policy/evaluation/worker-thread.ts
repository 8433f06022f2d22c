// One evaluation worker thread as the pool sees it: how it is started, its shared progress slot
// (read by the pool's watchdog), and the jobs it holds.
import fs from "node:fs";
import path from "node:path";
import v8 from "node:v8";
import { Worker } from "node:worker_threads";
import { parseValue } from "../runtime/value-text";
import type { EvalJob, WorkerOutcome } from "./protocol";
import type { EvalOutcome, EvaluationLimits } from "./types";

export interface Job extends EvalJob {
  outcomes: EvalOutcome[];
  resolve: (outcomes: EvalOutcome[]) => void;
}

export interface Slot {
  worker: Worker;
  slot: Int32Array;
  started: BigInt64Array;
  inflight: Map<number, Job>;
  timer: NodeJS.Timeout | null;
  dead: boolean;
  retiring: boolean;
}

export interface Image {
  module: WebAssembly.Module;
  overrides: [number, string][];
  data: string;
}

/**
 * WARNING: WebAssembly is compiled eagerly, when a policy is loaded, not function by function at
 * first call: a lazily compiled policy takes tens of milliseconds longer on its first evaluation in
 * each worker, which would count against the deadline (and, at publish, refuse a sound policy).
 */
let eagerWasm = false;
export function compileWasmEagerly(): void {
  if (eagerWasm) return;
  v8.setFlagsFromString("--no-wasm-lazy-compilation");
  eagerWasm = true;
}

/** Jobs a worker holds at once; more wait in the pool's queue. */
export const MAX_IN_FLIGHT = 64;

/** The worker's script: the compiled one, or the TypeScript source through tsx (tests, tsx). */
function workerScript(): { filename: string; evaluated: boolean } {
  const js = path.join(__dirname, "worker.js");
  if (__filename.endsWith(".js") && fs.existsSync(js)) return { filename: js, evaluated: false };
  const ts = path.join(__dirname, "worker.ts");
  return { filename: `require("tsx/cjs/api").register(); require(${JSON.stringify(ts)});`, evaluated: true };
}

export function outcomeOf(o: WorkerOutcome): EvalOutcome {
  if (!o.ok) return o;
  return { ok: true, value: o.result === null ? undefined : parseValue(o.result), ms: o.ms };
}

/** Starts a worker with the pool's limits; its progress slot says it is evaluating nothing. */
export function startWorker(limits: EvaluationLimits, reference: WebAssembly.Module | null, referenceFile: string | null): Slot {
  compileWasmEagerly();
  const progress = new SharedArrayBuffer(16);
  const script = workerScript();
  const worker = new Worker(script.filename, {
    eval: script.evaluated,
    workerData: { maxMemoryBytes: limits.maxMemoryBytes, reference, referenceFile, progress },
    // The JavaScript heap of builtins (strings, arrays they build) is bounded like the policy's memory.
    resourceLimits: { maxOldGenerationSizeMb: Math.max(64, Math.ceil(limits.maxMemoryBytes / 1048576)), maxYoungGenerationSizeMb: 16 },
    stdout: false,
    stderr: false,
  });
  const s: Slot = { worker, slot: new Int32Array(progress, 0, 2), started: new BigInt64Array(progress, 8, 1), inflight: new Map(), timer: null, dead: false, retiring: false };
  Atomics.store(s.slot, 0, -1);
  return s;
}
