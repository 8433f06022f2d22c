/*
 * The budget gate, at publish and at activation: a version is evaluated, in the evaluation
 * workers and under the same deadline and memory limit as decisions, on the inputs of its own
 * tests and on the inputs of the last recorded decisions. One evaluation past a bound refuses the
 * version (policy_too_slow), naming the input and the time, so that a policy that loops or explodes
 * is refused before it decides anything.
 */
import type { ChronStore } from "../chron/chron-store";
import type { DecisionContent } from "../chron/record";
import { UnprocessableError } from "../lib/errors";
import type { EvaluationPool } from "./evaluation/pool";
import { nanosOf, type ActivePolicy } from "./policy-engine";
import type { EvalOutcome } from "./evaluation/types";
import type { TestsBuild } from "./compiler";

export interface BudgetSettings {
  /** How many of the last recorded decisions a candidate is evaluated on. */
  samples: number;
}

function refuse(what: string, outcome: Extract<EvalOutcome, { ok: false }>, limits: EvaluationPool["limits"], extra: Record<string, unknown>): never {
  const bound =
    outcome.kind === "timeout"
      ? `did not finish within the evaluation deadline of ${limits.timeoutMs} ms (stopped after ${Math.round(outcome.ms)} ms)`
      : `needed more than the memory limit of ${Math.round(limits.maxMemoryBytes / 1048576)} MiB (after ${Math.round(outcome.ms)} ms)`;
  throw new UnprocessableError("policy_too_slow", `the policy ${bound} on ${what}`, { input: what, elapsed_ms: Math.round(outcome.ms), bound: outcome.kind, ...extra });
}

/** Evaluations in flight at once: the gate stops at the first one past a bound. */
const CHUNK = 8;

/**
 * Evaluates the items a few at a time. An evaluation past a bound is evaluated once more before it
 * counts: a policy that loops does so again, while a one-off delay (a busy machine, a worker just
 * started) does not refuse a sound policy.
 */
async function inChunks<T>(items: T[], evaluate: (item: T) => Promise<EvalOutcome>, check: (item: T, outcome: EvalOutcome) => void): Promise<void> {
  const tripped = (o: EvalOutcome) => !o.ok && o.kind !== "error";
  for (let i = 0; i < items.length; i += CHUNK) {
    const part = items.slice(i, i + CHUNK);
    const outcomes = await Promise.all(part.map(evaluate));
    for (let k = 0; k < part.length; k++) {
      const outcome = tripped(outcomes[k]) ? await evaluate(part[k]) : outcomes[k];
      check(part[k], outcome);
    }
  }
}

export class BudgetGate {
  constructor(
    private readonly pool: EvaluationPool,
    private readonly chron: Pick<ChronStore, "list" | "bounds">,
    private readonly settings: BudgetSettings,
  ) {}

  /** Evaluates every test rule of the set in WebAssembly; one past a bound refuses the version. */
  async tests(build: TestsBuild): Promise<void> {
    if (!build.entrypoints.length) return;
    const wasm = build.files.get("policy.wasm");
    if (!wasm) return;
    let handle;
    try {
      handle = await this.pool.load(wasm, build.files.get("data.json")?.toString("utf8") ?? "{}");
    } catch {
      // Tests that cannot load (a builtin only `opa test` mocks, say) leave the check to recorded inputs.
      return;
    }
    try {
      const now = nanosOf(new Date());
      await inChunks(
        build.entrypoints,
        async (e) => (await this.pool.evaluate([handle], e, undefined, now))[0],
        (e, o) => {
          if (!o.ok && o.kind !== "error") refuse(`the input of its test data.${e.replace(/\//g, ".")}`, o, this.pool.limits, { test: e });
        },
      );
    } finally {
      this.pool.release(handle);
    }
  }

  /** Evaluates the candidate on the inputs of the last recorded decisions, each at its recorded time. */
  async recent(candidate: ActivePolicy): Promise<number> {
    const samples = await this.lastDecisions(this.settings.samples);
    await inChunks(
      samples,
      (s) => candidate.evaluate(s.d.input, nanosOf(s.d.timestamp)),
      ({ seq, d }, o) => {
        if (o.ok || o.kind === "error") return;
        refuse(`the input of recorded decision ${seq} (${d.decision_id}: agent ${d.agent.name}, action ${d.action} on ${d.resource})`, o, this.pool.limits, { seq, decision_id: d.decision_id });
      },
    );
    return samples.length;
  }

  /** The last `n` decisions that kept their input, newest last; read in a few widening windows of the chain. */
  private async lastDecisions(n: number): Promise<{ seq: number; d: DecisionContent }[]> {
    if (n <= 0) return [];
    const span = await this.chron.bounds({ kind: "decision" });
    if (!span) return [];
    let width = n * 4;
    for (;;) {
      const fromSeq = Math.max(span.first, span.last - width + 1);
      const rows = await this.chron.list({ kind: "decision", fromSeq, toSeq: span.last }, fromSeq - 1, width);
      const decisions = rows.map((r) => ({ seq: r.seq, d: JSON.parse(r.content) as DecisionContent })).filter((x) => x.d.input);
      if (decisions.length >= n || fromSeq === span.first) return decisions.slice(-n);
      width *= 4;
    }
  }
}
