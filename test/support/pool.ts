import { EvaluationPool } from "../../src/policy/evaluation/pool";
import { referenceModulePath } from "../../src/policy/runtime/reference";
import type { RegoValue } from "../../src/policy/runtime/value";
import type { EvalOutcome, EvaluationLimits } from "../../src/policy/evaluation/types";

const pools: EvaluationPool[] = [];

/** A real evaluation pool (worker threads), closed after the test file. */
export async function testPool(limits: Partial<EvaluationLimits> = {}): Promise<EvaluationPool> {
  const pool = new EvaluationPool({ timeoutMs: 2000, maxMemoryBytes: 256 * 1024 * 1024, workers: 1, ...limits }, referenceModulePath());
  await pool.start();
  pools.push(pool);
  return pool;
}

afterAll(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

/** The outcome of a fake policy's evaluation: its value, or the error it threw. */
export function outcomeOf(evaluate: () => unknown): EvalOutcome {
  try {
    return { ok: true, value: evaluate() as RegoValue, ms: 0 };
  } catch (err) {
    return { ok: false, kind: "error", message: (err as Error).message, ms: 0 };
  }
}
