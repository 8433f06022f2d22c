/*
 * An evaluation worker: holds the loaded policies (active, shadow, and any being replayed or
 * checked) and evaluates them off the main thread. The pool watches the progress slot and ends
 * this thread when an evaluation outlives its deadline; past the memory limit the worker reports
 * and ends itself.
 */
import { parentPort, workerData } from "node:worker_threads";
import { NeedsReference, PolicyRuntime } from "../runtime/host";
import { MemoryLimitError, type WasmPolicy } from "../runtime/wasm-policy";
import type { FromWorker, ToWorker, WorkerOutcome, WorkerSetup } from "./protocol";
import { writeJSON } from "../runtime/value-text";

const setup = workerData as WorkerSetup;
const port = parentPort!;
const runtime = new PolicyRuntime({ maxMemoryBytes: setup.maxMemoryBytes }, setup.referenceFile, setup.reference);
const policies = new Map<number, WasmPolicy>();
const slot = new Int32Array(setup.progress, 0, 2);
const started = new BigInt64Array(setup.progress, 8, 1);

function post(message: FromWorker): void {
  port.postMessage(message);
}

function retire(): never {
  post({ type: "retiring" });
  process.exit(0);
}

/** Marks the evaluation of (job, phase) as running from now, for the pool's watchdog. */
function running(job: number, phase: number): void {
  Atomics.store(started, 0, process.hrtime.bigint());
  Atomics.store(slot, 1, phase);
  Atomics.store(slot, 0, job);
}

function evaluate(policy: WasmPolicy | undefined, entrypoint: string, input: string | undefined, nowNs: bigint, job: number, phase: number): WorkerOutcome {
  if (!policy) return { ok: false, kind: "error", message: "the policy is not loaded in this worker", ms: 0 };
  for (;;) {
    running(job, phase);
    const t0 = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
    try {
      const results = policy.evaluate(entrypoint, input, { nowNs });
      return { ok: true, result: results.length ? writeJSON(results[0].result) : null, ms: ms() };
    } catch (err) {
      if (err instanceof NeedsReference && !runtime.referenceWarm()) {
        // Not part of the evaluation: the watchdog sees this worker idle while the module starts.
        Atomics.store(slot, 0, -1);
        runtime.warmReference();
        continue;
      }
      if (err instanceof MemoryLimitError) return { ok: false, kind: "memory", message: err.message, ms: ms() };
      return { ok: false, kind: "error", message: err instanceof Error ? err.message : String(err), ms: ms() };
    }
  }
}

port.on("message", (msg: ToWorker) => {
  switch (msg.type) {
    case "load":
      try {
        const policy = runtime.loadModule(msg.module, new Map(msg.overrides), msg.data);
        policies.set(msg.id, policy);
        post({ type: "loaded", id: msg.id, reference: runtime.usesReference(policy) });
      } catch (err) {
        post({ type: "load-failed", id: msg.id, message: err instanceof Error ? err.message : String(err) });
      }
      return;
    case "unload":
      policies.delete(msg.id);
      return;
    case "eval":
      for (const job of msg.jobs) {
        for (let phase = job.from; phase < job.policies.length; phase++) {
          const outcome = evaluate(policies.get(job.policies[phase]), job.entrypoint, job.input, job.nowNs, job.id, phase);
          Atomics.store(slot, 0, -1);
          post({ type: "result", job: job.id, phase, outcome });
          if (!outcome.ok && outcome.kind === "memory") retire();
        }
      }
      return;
  }
});

Atomics.store(slot, 0, -1);
post({ type: "ready" });
