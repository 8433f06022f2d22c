/*
 * Differential test: every builtin CLAIIM declares, on a table of arguments (generated from its
 * declared types, and hand-written in cases.ts), evaluated through CLAIIM's real path (its
 * capabilities, `opa build -t wasm`, its evaluation workers and builtins) and by `opa eval` (OPA's
 * own evaluator) on the same module: the results must be identical, an undefined result (OPA's
 * answer to a failing builtin without strict errors) included.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parse as parseLossless } from "lossless-json";
import { OpaCliCompiler } from "../../src/policy/opa-compiler";
import { capabilitiesDocument, referenceNames } from "../../src/policy/runtime/capabilities";
import { key, numberOf, type RegoValue } from "../../src/policy/runtime/value";
import { OPA_BIN } from "../support/fake-core";
import { testPool } from "../support/pool";
import { CURATED, generated, NO_GENERATED, NOT_COMPARED, type TypeDecl } from "./cases";
import { writeJSON } from "../../src/policy/runtime/value-text";

interface Declared {
  name: string;
  relation?: boolean;
  decl: { args?: TypeDecl[] };
}

const current = JSON.parse(execFileSync(OPA_BIN, ["capabilities", "--current"], { encoding: "utf8", maxBuffer: 16 * 1024 * 1024 }));
const declared = (capabilitiesDocument(current, referenceNames()).builtins as Declared[]).filter((b) => !NOT_COMPARED[b.name]).sort((a, b) => a.name.localeCompare(b.name));

function casesOf(b: Declared): string[][] {
  const args = b.decl.args ?? [];
  return [...(CURATED[b.name] ?? []), ...(NO_GENERATED.has(b.name) ? [] : generated(args))];
}

/**
 * One rule per case. Arguments pass through t(), whose result the type checker sees as `any`, so
 * that wrong-typed arguments reach the builtin at evaluation (as they would from input) instead of
 * failing the type check of the whole module.
 */
function moduleOf(b: Declared, cases: string[][]): string {
  const rules = cases.map((args, i) => {
    const call = `${b.name}(${args.map((a) => `t(${a})`).join(", ")}`;
    return b.relation ? `r_${i} := [y | ${call}, y)]` : `r_${i} := ${call})`;
  });
  return `package claiim_diff\n\nt(x) := object.get({}, "claiim", x)\n\n${rules.join("\n")}\n`;
}

type Side = { values: Record<string, RegoValue> } | { error: string };

function opaEval(sources: Record<string, string>, entrypoint: string): Side {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "claiim-diff-"));
  try {
    for (const [name, text] of Object.entries(sources)) {
      fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
      fs.writeFileSync(path.join(dir, name), text);
    }
    const out = execFileSync(OPA_BIN, ["eval", "--format", "json", "-d", dir, `data.${entrypoint.replace(/\//g, ".")}`], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024, stdio: ["ignore", "pipe", "pipe"] });
    const parsed = parseLossless(out, null, (text) => numberOf(text)) as { result?: { expressions: { value: Record<string, RegoValue> }[] }[] };
    return { values: parsed.result?.[0]?.expressions[0].value ?? {} };
  } catch (err) {
    return { error: String((err as { stdout?: string }).stdout || (err as Error).message).slice(0, 300) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function claiim(compiler: OpaCliCompiler, pool: Awaited<ReturnType<typeof testPool>>, sources: Record<string, string>, entrypoint: string): Promise<Side> {
  let files;
  try {
    files = await compiler.buildWasm(sources, [entrypoint]);
  } catch (err) {
    return { error: (err as Error).message };
  }
  const handle = await pool.load(files.get("policy.wasm")!, files.get("data.json")?.toString("utf8") ?? "{}");
  try {
    const [outcome] = await pool.evaluate([handle], entrypoint, undefined, BigInt(Date.now()) * 1_000_000n);
    if (!outcome.ok) return { error: outcome.message };
    return { values: (outcome.value ?? {}) as Record<string, RegoValue> };
  } finally {
    pool.release(handle);
  }
}

/** Differences between the two sides, case by case. */
function differences(b: Declared, cases: string[][], ours: Side, theirs: Side): string[] {
  if ("error" in ours || "error" in theirs) {
    if ("error" in ours && "error" in theirs) return [];
    return [`${b.name}: ${"error" in ours ? `CLAIIM failed (${ours.error})` : `opa eval failed (${(theirs as { error: string }).error})`}`];
  }
  const out: string[] = [];
  cases.forEach((args, i) => {
    const a = ours.values[`r_${i}`];
    const o = theirs.values[`r_${i}`];
    if ((a === undefined) !== (o === undefined) || (a !== undefined && key(a) !== key(o!))) {
      out.push(`${b.name}(${args.join(", ")}): CLAIIM ${a === undefined ? "undefined" : writeJSON(a)}, opa eval ${o === undefined ? "undefined" : writeJSON(o)}`);
    }
  });
  return out;
}

const results = new Map<string, string[]>();

beforeAll(async () => {
  const compiler = new OpaCliCompiler(OPA_BIN);
  const pool = await testPool({ workers: 1, timeoutMs: 30_000 });
  let next = 0;
  const worker = async () => {
    while (next < declared.length) {
      const b = declared[next++];
      const cases = casesOf(b);
      const sources = { "diff.rego": moduleOf(b, cases) };
      let diffs = differences(b, cases, await claiim(compiler, pool, sources, "claiim_diff"), opaEval(sources, "claiim_diff"));
      // When the whole module fails on one side, compare case by case to find which.
      if (diffs.length === 1 && diffs[0].startsWith(`${b.name}: `)) {
        diffs = [];
        for (const args of cases) {
          const one = { "diff.rego": moduleOf(b, [args]) };
          diffs.push(...differences(b, [args], await claiim(compiler, pool, one, "claiim_diff"), opaEval(one, "claiim_diff")));
        }
      }
      results.set(b.name, diffs);
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
}, 20 * 60 * 1000);

describe("every builtin CLAIIM evaluates gives what opa eval gives", () => {
  test("every OPA builtin is declared except the network and random ones", () => {
    const names = new Set((capabilitiesDocument(current, referenceNames()).builtins as Declared[]).map((b) => b.name));
    const refused = current.builtins.map((b: { name: string }) => b.name).filter((n: string) => !names.has(n));
    expect(refused.sort()).toEqual(["http.send", "net.lookup_ip_addr", "opa.runtime", "rand.intn", "uuid.rfc4122"]);
  });

  test.each(declared.map((b) => [b.name]))("%s", (name) => {
    expect(results.get(name)).toEqual([]);
  });

  test("template strings and rule metadata", async () => {
    const sources = {
      "extra.rego": `package claiim_diff_extra\n\nx := 9007199254740993\n\ns := $"n={x} set={ {1, 2} } obj={ {"b": 1, "a": [1.0]} } s={"é"}"\n\n# METADATA\n# title: The rule\n# custom:\n#   owner: alice\nm := rego.metadata.rule()\n\nc := rego.metadata.chain()\n`,
    };
    const pool = await testPool({ workers: 1, timeoutMs: 30_000 });
    const ours = await claiim(new OpaCliCompiler(OPA_BIN), pool, sources, "claiim_diff_extra");
    const theirs = opaEval(sources, "claiim_diff_extra");
    expect("values" in ours && "values" in theirs).toBe(true);
    expect(key((ours as { values: RegoValue }).values)).toBe(key((theirs as { values: RegoValue }).values));
  });
});
