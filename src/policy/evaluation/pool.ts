/*
 * Policy evaluation off the event loop, bounded in time and memory.
 *
 * A pool of worker threads (node:worker_threads) holds every loaded policy (the active version, the
 * shadow, versions being replayed or checked at publish). Callers queue evaluations; the pool hands
 * them to the least busy worker in batches. Each evaluation has a deadline: a watchdog on the main
 * thread reads the worker's progress slot (shared memory) and, when the evaluation in progress has
 * run past the deadline, ends the worker (Worker.terminate interrupts WebAssembly loops) and starts
 * another. Each policy's WebAssembly memory has a maximum, and each worker a heap limit; past
 * either, that worker is ended too. The evaluation that tripped a bound gets an outcome that says
 * which; the others that worker held are run again elsewhere (evaluation is deterministic: the
 * clock is an argument). So the event loop, /healthz, management routes and rollback always answer,
 * whatever a policy does.
 */
import fs from "node:fs";
import type { Logger } from "../../lib/logger";
import { prepareModuleAsync } from "../runtime/host";
import { ReferenceBuiltins } from "../runtime/reference";
import type { FromWorker, ToWorker } from "./protocol";
import type { EvalOutcome, EvaluationLimits, PolicyHandle, PoolStats, Trip, TripEvent } from "./types";
import { compileWasmEagerly, MAX_IN_FLIGHT, outcomeOf, startWorker, type Image, type Job, type Slot } from "./worker-thread";

export class EvaluationPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private readonly images = new Map<number, Image>();
  private readonly loading = new Map<number, { pending: Set<Slot>; resolve: (reference: boolean) => void; reject: (err: Error) => void; reference: boolean }>();
  private reference: WebAssembly.Module | null = null;
  private nextImage = 1;
  private nextJob = 1;
  private flushing = false;
  private closed = false;
  private readonly tripListeners: ((e: TripEvent) => void)[] = [];
  private readonly outcomeListeners: ((outcome: EvalOutcome) => void)[] = [];
  private readonly counters = { evaluations: 0, timeouts: 0, memory_exceeded: 0, worker_restarts: 0 };

  constructor(
    readonly limits: EvaluationLimits,
    private readonly referenceFile: string | null,
    private readonly logger?: Logger,
  ) {
    compileWasmEagerly();
  }

  /** Starts the workers; OPA's builtin module, when built, is compiled once for all of them. */
  async start(): Promise<void> {
    if (this.referenceFile && fs.existsSync(this.referenceFile)) {
      this.reference = await ReferenceBuiltins.compileAsync(this.referenceFile, this.limits.maxMemoryBytes);
    }
    for (let i = 0; i < this.limits.workers; i++) this.slots.push(this.spawn());
  }

  onTrip(listener: (e: TripEvent) => void): void {
    this.tripListeners.push(listener);
  }

  /** Calls `listener` with the outcome of every evaluation (the metrics time them). */
  onOutcome(listener: (outcome: EvalOutcome) => void): void {
    this.outcomeListeners.push(listener);
  }

  stats(): PoolStats {
    return { workers: this.slots.length, ...this.counters, queued: this.queue.length };
  }

  /**
   * Loads a compiled policy (its policy.wasm and data.json text) into every worker. Rejects when it
   * does not load (a builtin it calls is not implemented, its data does not fit its memory…).
   */
  async load(wasm: Uint8Array, data: string): Promise<PolicyHandle> {
    if (this.closed) throw new Error("the evaluation pool is closed");
    const { module, overrides } = await prepareModuleAsync(wasm, this.reference !== null);
    const id = this.nextImage++;
    const image: Image = { module, overrides: [...overrides], data };
    this.images.set(id, image);
    try {
      const reference = await new Promise<boolean>((resolve, reject) => {
        const pending = new Set(this.slots.filter((s) => !s.dead));
        this.loading.set(id, { pending, resolve, reject, reference: false });
        for (const s of pending) {
          this.send(s, { type: "load", id, ...image });
          s.worker.ref();
        }
      });
      return { id, usesReference: reference };
    } catch (err) {
      this.release({ id, usesReference: false });
      throw err;
    } finally {
      this.loading.delete(id);
    }
  }

  release(handle: PolicyHandle): void {
    if (!this.images.delete(handle.id)) return;
    for (const s of this.slots) if (!s.dead) this.send(s, { type: "unload", id: handle.id });
  }

  /**
   * Evaluates `entrypoint` of each policy in turn on the same input, with the same clock, in one
   * worker; one outcome per policy. Never rejects: a failure is an outcome.
   */
  evaluate(handles: PolicyHandle[], entrypoint: string, input: string | undefined, nowNs: bigint): Promise<EvalOutcome[]> {
    if (this.closed) return Promise.resolve(handles.map(() => ({ ok: false as const, kind: "error" as const, message: "the evaluation pool is closed", ms: 0 })));
    return new Promise((resolve) => {
      const id = this.nextJob;
      this.nextJob = this.nextJob >= 0x7fffffff ? 1 : this.nextJob + 1;
      this.queue.push({ id, policies: handles.map((h) => h.id), from: 0, entrypoint, input, nowNs, outcomes: [], resolve });
      this.scheduleFlush();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) this.finish(job, { ok: false, kind: "error", message: "the evaluation pool is closed", ms: 0 });
    await Promise.all(
      this.slots.map(async (s) => {
        s.dead = true;
        if (s.timer) clearTimeout(s.timer);
        for (const job of s.inflight.values()) this.finish(job, { ok: false, kind: "error", message: "the evaluation pool is closed", ms: 0 });
        await s.worker.terminate();
      }),
    );
  }

  private spawn(): Slot {
    const s = startWorker(this.limits, this.reference, this.referenceFile);
    s.worker.on("message", (m: FromWorker) => this.received(s, m));
    s.worker.on("error", (err) => this.failed(s, err));
    s.worker.on("exit", () => this.failed(s, null));
    for (const [id, image] of this.images) this.send(s, { type: "load", id, ...image });
    this.idle(s);
    return s;
  }

  /**
   * An idle worker does not keep the process alive; one with work does (so that a script awaiting an
   * evaluation is not left without its answer).
   */
  private idle(s: Slot): void {
    const busy = s.inflight.size > 0 || [...this.loading.values()].some((l) => l.pending.has(s));
    if (busy) s.worker.ref();
    else s.worker.unref();
  }

  private send(s: Slot, message: ToWorker): void {
    s.worker.postMessage(message);
  }

  private received(s: Slot, m: FromWorker): void {
    if (s.dead) return;
    switch (m.type) {
      case "ready":
        return;
      case "loaded":
      case "load-failed": {
        const l = this.loading.get(m.id);
        if (!l) return;
        if (m.type === "load-failed") {
          for (const p of l.pending) this.idle(p);
          return l.reject(new Error(m.message));
        }
        l.reference ||= m.reference;
        l.pending.delete(s);
        this.idle(s);
        if (l.pending.size === 0) l.resolve(l.reference);
        return;
      }
      case "retiring":
        s.retiring = true;
        return;
      case "result": {
        const job = s.inflight.get(m.job);
        if (!job || m.phase !== job.from) return;
        const outcome = outcomeOf(m.outcome);
        if (!outcome.ok && outcome.kind === "memory") this.tripped(job.policies[m.phase], "memory", outcome.ms);
        job.outcomes.push(outcome);
        job.from += 1;
        this.counters.evaluations += 1;
        for (const l of this.outcomeListeners) l(outcome);
        if (job.from === job.policies.length) {
          s.inflight.delete(job.id);
          job.resolve(job.outcomes);
          if (s.inflight.size === 0) this.idle(s);
          this.scheduleFlush();
        }
        return;
      }
    }
  }

  private finish(job: Job, outcome: EvalOutcome): void {
    while (job.outcomes.length < job.policies.length) job.outcomes.push(outcome);
    job.resolve(job.outcomes);
  }

  private tripped(handle: number, kind: Trip, ms: number): void {
    if (kind === "timeout") this.counters.timeouts += 1;
    else this.counters.memory_exceeded += 1;
    for (const l of this.tripListeners) {
      try {
        l({ handle, kind, ms });
      } catch (err) {
        this.logger?.error("evaluation trip listener failed", { error: (err as Error).message });
      }
    }
  }

  /**
   * A worker ended or must be ended. The evaluation in progress, if any, gets `culprit`; the others
   * it held go back to the queue; another worker takes its place.
   */
  private replace(s: Slot, culprit: { kind: Trip | "error"; message: string } | null): void {
    if (s.dead) return;
    s.dead = true;
    if (s.timer) clearTimeout(s.timer);
    const current = Atomics.load(s.slot, 0);
    const phase = Atomics.load(s.slot, 1);
    const elapsed = current >= 0 ? Number(process.hrtime.bigint() - Atomics.load(s.started, 0)) / 1e6 : 0;
    const requeue: Job[] = [];
    for (const job of s.inflight.values()) {
      if (culprit && job.id === current && job.from === phase) {
        if (culprit.kind !== "error") this.tripped(job.policies[phase], culprit.kind, elapsed);
        const outcome: EvalOutcome = { ok: false, kind: culprit.kind, message: culprit.message, ms: elapsed };
        job.outcomes.push(outcome);
        job.from += 1;
        this.counters.evaluations += 1;
        for (const l of this.outcomeListeners) l(outcome);
        if (job.from === job.policies.length) {
          job.resolve(job.outcomes);
          continue;
        }
      }
      requeue.push(job);
    }
    s.inflight.clear();
    this.queue.unshift(...requeue);
    void s.worker.terminate();
    const index = this.slots.indexOf(s);
    if (!this.closed && index >= 0) {
      this.counters.worker_restarts += 1;
      this.slots[index] = this.spawn();
      // A policy loading when the worker ended is now loading in its replacement.
      for (const l of this.loading.values()) {
        if (l.pending.delete(s)) l.pending.add(this.slots[index]);
      }
    }
    this.scheduleFlush();
  }

  private failed(s: Slot, err: Error | null): void {
    if (s.dead) return;
    if (s.retiring) return this.replace(s, null);
    const oom = (err as NodeJS.ErrnoException | null)?.code === "ERR_WORKER_OUT_OF_MEMORY";
    if (!oom) this.logger?.error("evaluation worker ended unexpectedly", { error: err?.message ?? "exited" });
    this.replace(
      s,
      oom
        ? { kind: "memory", message: `the policy needed more memory than the limit of ${Math.round(this.limits.maxMemoryBytes / 1048576)} MiB` }
        : { kind: "error", message: `the evaluation worker failed: ${err?.message ?? "it exited"}` },
    );
  }

  private watch(s: Slot, delayMs: number): void {
    if (s.timer || s.dead) return;
    s.timer = setTimeout(() => {
      s.timer = null;
      if (s.dead || s.inflight.size === 0) return;
      const current = Atomics.load(s.slot, 0);
      if (current < 0) return this.watch(s, this.limits.timeoutMs);
      const elapsed = Number(process.hrtime.bigint() - Atomics.load(s.started, 0)) / 1e6;
      if (elapsed < this.limits.timeoutMs) return this.watch(s, Math.max(1, this.limits.timeoutMs - elapsed));
      this.replace(s, { kind: "timeout", message: `the policy did not finish within the deadline of ${this.limits.timeoutMs} ms` });
    }, delayMs);
    s.timer.unref();
  }

  private scheduleFlush(): void {
    if (this.flushing) return;
    this.flushing = true;
    // Requests that arrive in the same turn of the event loop go to a worker in one message.
    setImmediate(() => {
      this.flushing = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.queue.length) {
      let best: Slot | null = null;
      let open = 0;
      for (const s of this.slots) {
        if (s.dead || s.inflight.size >= MAX_IN_FLIGHT) continue;
        open += 1;
        if (!best || s.inflight.size < best.inflight.size) best = s;
      }
      if (!best) return;
      // Share what is queued among the workers that can take more.
      const share = Math.max(1, Math.ceil(this.queue.length / open));
      const jobs = this.queue.splice(0, Math.min(share, MAX_IN_FLIGHT - best.inflight.size));
      for (const job of jobs) best.inflight.set(job.id, job);
      best.worker.ref();
      this.send(best, { type: "eval", jobs: jobs.map(({ id, policies, from, entrypoint, input, nowNs }) => ({ id, policies, from, entrypoint, input, nowNs })) });
      this.watch(best, this.limits.timeoutMs);
    }
  }
}
