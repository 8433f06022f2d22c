/*
 * OPA's Rego conformance cases (v1/test/cases/testdata/v1 in OPA's Go module), run through CLAIIM's
 * compile and evaluate path: CLAIIM's capabilities and `opa build -t wasm` (OpaCliCompiler.buildWasm),
 * then CLAIIM's WebAssembly runtime and builtins in its evaluation workers (EvaluationPool).
 *
 * A case's query becomes the body of a rule in a module of its own, whose head collects the
 * query's variables, as OPA's own WebAssembly test compiles a query into an entrypoint. The result
 * is compared as OPA's tests compare it (v1/topdown/exported_test.go): sets of bindings, numbers
 * by value, array bindings sorted when the case says so.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parse as parseLossless } from "lossless-json";
import { compare, key, numberOf, type RegoValue } from "../../src/policy/runtime/value";
import { writeJSON } from "../../src/policy/runtime/value-text";

export interface OpaCase {
  note: string;
  file: string;
  query: string;
  query_vars: string[];
  modules: string[];
  data?: unknown;
  input?: unknown;
  input_not_json?: string;
  want_defined?: boolean;
  want_result?: Record<string, RegoValue>[];
  want_error_code?: string;
  want_error?: string;
  sort_bindings: boolean;
  ignore_generated_vars: boolean;
  strict_error: boolean;
  experimental_keywords: boolean;
}

const LOADER = path.join(__dirname, "opa-cases");
export const ENTRYPOINT = "claiim_conformance/results";

/** OPA's cases, read by OPA's own loader (a small Go program), with numbers kept exact. */
export function loadCases(): OpaCase[] {
  const env = { ...process.env, GOFLAGS: "-mod=mod" };
  const opaDir = execFileSync("go", ["list", "-m", "-f", "{{.Dir}}", "github.com/open-policy-agent/opa"], { cwd: LOADER, env, encoding: "utf8" }).trim();
  const json = execFileSync("go", ["run", ".", path.join(opaDir, "v1/test/cases/testdata/v1")], { cwd: LOADER, env, encoding: "utf8", maxBuffer: 256 * 1024 * 1024 });
  return parseLossless(json, null, (text) => numberOf(text)) as OpaCase[];
}

/** A query for the whole data document cannot be a rule inside it: it is the entrypoint `/` itself. */
const WHOLE_DATA = /^\s*data\s*=\s*([A-Za-z_][A-Za-z0-9_]*)\s*$/;

/** The policy files for a case (its modules, its data, and the query as a rule) and the entrypoint to build. */
export function sourcesOf(c: OpaCase): { files: Record<string, string>; entrypoint: string; wholeData: string | null } {
  const files = caseFiles(c);
  const whole = WHOLE_DATA.exec(c.query);
  if (whole) return { files, entrypoint: "/", wholeData: whole[1] };
  const head = `{${c.query_vars.map((v) => `${JSON.stringify(v)}: ${v}`).join(", ")}}`;
  files["claiim_conformance/query.rego"] = `package claiim_conformance\n\nresults contains ${head} if {\n${c.query}\n}\n`;
  return { files, entrypoint: ENTRYPOINT, wholeData: null };
}

/** The case's own modules and data. */
export function caseFiles(c: OpaCase): Record<string, string> {
  const files: Record<string, string> = {};
  c.modules.forEach((m, i) => (files[`case/module-${i}.rego`] = m));
  if (c.data !== undefined) files["data.json"] = writeJSON(c.data);
  return files;
}

/** The bindings of a result set as the harness compares them. */
export function bindingsOf(resultSet: { result: RegoValue }[], wholeData: string | null): Record<string, RegoValue>[] {
  if (!resultSet.length) return [];
  if (wholeData !== null) return [{ [wholeData]: resultSet[0].result }];
  return resultSet[0].result as Record<string, RegoValue>[];
}

/** Does the case's expectation depend on strict builtin errors, which neither CLAIIM nor `opa eval` uses? */
export function needsNonStrictOracle(c: OpaCase): boolean {
  return c.strict_error && (c.want_error_code !== undefined || c.want_error !== undefined);
}

/**
 * What OPA's own evaluator gives for the case without strict builtin errors, as `opa eval` does:
 * the expectation for cases whose recorded error appears only in strict mode.
 */
export function opaEvalBindings(opaBin: string, c: OpaCase): Record<string, RegoValue>[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "claiim-oracle-"));
  fs.mkdirSync(path.join(dir, "src"));
  try {
    for (const [name, text] of Object.entries(caseFiles(c))) {
      fs.mkdirSync(path.dirname(path.join(dir, "src", name)), { recursive: true });
      fs.writeFileSync(path.join(dir, "src", name), text);
    }
    const args = ["eval", "--format", "json", "-d", path.join(dir, "src")];
    if (c.input !== undefined) {
      fs.writeFileSync(path.join(dir, "input.json"), writeJSON(c.input));
      args.push("--input", path.join(dir, "input.json"));
    }
    const out = execFileSync(opaBin, [...args, c.query], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    const parsed = parseLossless(out, null, (text) => numberOf(text)) as { result?: { bindings?: Record<string, RegoValue> }[] };
    return (parsed.result ?? []).map((r) => r.bindings ?? {});
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export type Outcome = { ok: true } | { ok: false; why: string };

function bindingsKey(b: Record<string, RegoValue>, c: OpaCase): string {
  const kept: [string, RegoValue][] = Object.entries(b)
    .filter(([k]) => !(c.ignore_generated_vars && k.startsWith("__localq")))
    .map(([k, v]) => [k, c.sort_bindings && Array.isArray(v) ? [...v].sort(compare) : v]);
  return key(Object.fromEntries(kept) as RegoValue);
}

/**
 * Judges what CLAIIM gave for a case: the bindings, or the error evaluation ended with. `oracle` is
 * what `opa eval` gave, for the cases whose recorded error needs strict builtin errors.
 */
export function judge(c: OpaCase, got: { bindings: Record<string, RegoValue>[] } | { error: string }, oracle?: Record<string, RegoValue>[]): Outcome {
  const errorExpected = (c.want_error_code !== undefined || c.want_error !== undefined) && !c.strict_error;
  if ("error" in got) {
    if (!errorExpected) return { ok: false, why: `unexpected error: ${got.error}` };
    if (c.want_error_code === "eval_conflict_error" && !/conflict/.test(got.error)) return { ok: false, why: `expected a conflict error, got: ${got.error}` };
    return { ok: true };
  }
  if (errorExpected) return { ok: false, why: `expected error ${c.want_error_code ?? c.want_error}, got ${writeJSON(got.bindings)}` };
  if (c.want_defined !== undefined) {
    return (got.bindings.length > 0) === c.want_defined ? { ok: true } : { ok: false, why: `expected ${c.want_defined ? "defined" : "undefined"}` };
  }
  const wanted = needsNonStrictOracle(c) ? oracle : c.want_result;
  if (!wanted) return { ok: false, why: "the case has no expectation CLAIIM can check" };
  const want = new Set(wanted.map((b) => bindingsKey(b, c)));
  const have = new Set(got.bindings.map((b) => bindingsKey(b, c)));
  const same = want.size === have.size && [...want].every((k) => have.has(k));
  return same ? { ok: true } : { ok: false, why: `want ${writeJSON(wanted)}\n got ${writeJSON(got.bindings)}` };
}
