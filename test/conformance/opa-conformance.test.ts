/*
 * OPA's own Rego conformance suite (2,400 cases in OPA 1.22.3's Go module), through CLAIIM's real
 * compile and evaluate path: CLAIIM's capabilities and `opa build -t wasm`, then CLAIIM's
 * WebAssembly runtime and builtins in its evaluation workers. Every case must give OPA's result,
 * errors included, except those in exceptions.json, which cannot apply to CLAIIM (network and
 * random builtins, inputs JSON cannot express), each with its reason; an exception that no longer
 * fails is stale and fails the test.
 */
import path from "node:path";
import { OpaCliCompiler } from "../../src/policy/opa-compiler";
import { type RegoValue } from "../../src/policy/runtime/value";
import { OPA_BIN } from "../support/fake-core";
import { testPool } from "../support/pool";
import { bindingsOf, judge, loadCases, needsNonStrictOracle, opaEvalBindings, sourcesOf, type OpaCase, type Outcome } from "./harness";
import exceptions from "./exceptions.json";
import { writeJSON } from "../../src/policy/runtime/value-text";

const cases = loadCases();
const keyOf = (c: OpaCase) => `${c.file} | ${c.note}`;
/** One test per folder of OPA's suite (a topic: aggregates, sprintf, time…). */
const byTopic = new Map<string, OpaCase[]>();
for (const c of cases) {
  const topic = c.file.split("/")[0];
  byTopic.set(topic, [...(byTopic.get(topic) ?? []), c]);
}
const excepted = exceptions as Record<string, string>;

/** Cases compiled at once: each is an `opa build` process. */
const PARALLEL = 4;

const results = new Map<OpaCase, Outcome>();

async function run(c: OpaCase, compiler: OpaCliCompiler, pool: Awaited<ReturnType<typeof testPool>>): Promise<Outcome> {
  if (c.input_not_json) return { ok: false, why: c.input_not_json };
  const src = sourcesOf(c);
  let files;
  try {
    files = await compiler.buildWasm(src.files, [src.entrypoint]);
  } catch (err) {
    return { ok: false, why: `refused at compile: ${(err as { code?: string }).code ?? ""} ${(err as Error).message}` };
  }
  let got: { bindings: Record<string, RegoValue>[] } | { error: string };
  let handle;
  try {
    handle = await pool.load(files.get("policy.wasm")!, files.get("data.json")?.toString("utf8") ?? "{}");
  } catch (err) {
    return { ok: false, why: `refused at load: ${(err as Error).message}` };
  }
  try {
    const [outcome] = await pool.evaluate([handle], src.entrypoint, c.input === undefined ? undefined : writeJSON(c.input), BigInt(Date.now()) * 1_000_000n);
    if (!outcome.ok) got = { error: outcome.message };
    else got = { bindings: bindingsOf(outcome.value === undefined ? [] : [{ result: outcome.value }], src.wholeData) };
  } finally {
    pool.release(handle);
  }
  return judge(c, got, needsNonStrictOracle(c) ? opaEvalBindings(OPA_BIN, c) : undefined);
}

beforeAll(async () => {
  const compiler = new OpaCliCompiler(OPA_BIN);
  // One worker: each case loads its own policy, into every worker of the pool.
  const pool = await testPool({ workers: 1, timeoutMs: 30_000 });
  let next = 0;
  const worker = async () => {
    while (next < cases.length) {
      const c = cases[next++];
      results.set(c, await run(c, compiler, pool).catch((err: Error) => ({ ok: false as const, why: `the harness failed: ${err.message}` })));
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
}, 30 * 60 * 1000);

describe("OPA's conformance suite through CLAIIM's compile and evaluate path", () => {
  test("the suite is OPA's whole v1 suite, and every exception names one of its cases with a reason", () => {
    expect(cases.length).toBeGreaterThanOrEqual(2400);
    const keys = new Set(cases.map(keyOf));
    for (const [key, reason] of Object.entries(excepted)) {
      expect(keys.has(key) ? key : `unknown case in exceptions.json: ${key}`).toBe(key);
      expect(reason.length).toBeGreaterThan(20);
    }
    const untold = cases.filter((c) => c.input_not_json && !excepted[keyOf(c)]).map(keyOf);
    expect(untold).toEqual([]);
  });

  test.each([...byTopic.keys()].sort())("%s", (topic) => {
    const failures: string[] = [];
    for (const c of byTopic.get(topic)!) {
      const outcome = results.get(c)!;
      const reason = excepted[keyOf(c)];
      if (reason && outcome.ok) failures.push(`${c.note}: passes, so its exception ("${reason}") is stale`);
      if (!reason && !outcome.ok) failures.push(`${c.note}: ${outcome.why}`);
    }
    expect(failures).toEqual([]);
  });

  test("summary", () => {
    const passed = [...results.values()].filter((o) => o.ok).length;
    // Printed for the record in the test log; the assertions are above.
    process.stdout.write(`OPA conformance: ${passed} of ${cases.length} cases pass, ${Object.keys(excepted).length} excepted (${path.basename(__dirname)}/exceptions.json)\n`);
    expect(passed + Object.keys(excepted).length).toBe(cases.length);
  });
});
