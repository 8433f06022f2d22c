import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { UnprocessableError } from "../lib/errors";
import type { CodeWith } from "../lib/problems";
import { createTwoFilesPatch } from "diff";
import { readBundle, type BundleFiles } from "./bundle";
import { checkSourcePaths, ENTRYPOINT, type Compiled, type CompileGate, type OpaProblem, type PolicyCompiler, type PolicySources, type PolicyWarning, type TestsBuild } from "./compiler";
import { capabilitiesDocument, referenceNames } from "./runtime/capabilities";
import { REFUSED } from "./runtime/builtins";
import { mayHaveNumericRefs, rewriteNumericDataRefs, type ModuleAst } from "./numeric-data-refs";

const run = promisify(execFile);

/** Parses OPA's text errors ("file:row: code: message") for the commands that have no JSON output. */
function parseOpaText(stderr: string): OpaProblem[] {
  const problems: OpaProblem[] = [];
  for (const line of stderr.split("\n")) {
    const m = /^(?:error: (?:\d+ errors? occurred(?: during loading)?: )?)?(.+?):(\d+): (rego_[a-z_]+): (.*)$/.exec(line.trim());
    if (m) problems.push({ file: m[1], row: Number(m[2]), col: 0, code: m[3], message: m[4] });
  }
  return problems;
}

/**
 * Compiles with the real OPA CLI, against the builtins that the opa-wasm runtime can execute:
 * a policy that calls anything else is refused at compile time, not at evaluation.
 */
/**
 * The problem code of a refusal, by the kind of mistake: Rego that does not parse, a rule and a
 * package claiming the same path, a builtin this runtime cannot execute; any other compile error.
 */
function refusalCode(p: OpaProblem): CodeWith<422> {
  if (p.code === "rego_parse_error") return "policy_syntax_error";
  if (p.code === "rego_type_error" && /conflicts with/.test(p.message)) return "policy_package_conflict";
  if (p.code === "rego_type_error" && /^undefined function /.test(p.message)) return "policy_builtin_unsupported";
  return "policy_compile_failed";
}

export class OpaCliCompiler implements PolicyCompiler {
  private capabilitiesFile: Promise<string> | null = null;

  constructor(private readonly opaBin: string) {}

  async compile(sources: PolicySources, gate?: CompileGate): Promise<Compiled> {
    checkSourcePaths(sources);
    return this.inWorkspace(sources, async (src, out) => {
      const capabilities = await this.capabilities();
      await this.opa(src, ["check", "--strict", "--format", "json", "--capabilities", capabilities, "."], "json");
      const files = await this.build(src, out, [ENTRYPOINT], sources);
      const hasTests = Object.keys(sources).some((n) => n.endsWith("_test.rego"));
      if (gate) await gate(files, hasTests ? await this.testsIn(src, sources) : null);
      if (hasTests) await this.test(src);
      const warnings = await this.formatting(src, sources);
      return { files, warnings };
    });
  }

  buildTests(sources: PolicySources): Promise<TestsBuild | null> {
    if (!Object.keys(sources).some((n) => n.endsWith("_test.rego"))) return Promise.resolve(null);
    return this.inWorkspace(sources, (src) => this.testsIn(src, sources));
  }

  /**
   * The test rules (rules named test_… without arguments, as `opa test` finds them), each an
   * entrypoint of one WebAssembly build with the tests included.
   */
  private async testsIn(src: string, sources: PolicySources): Promise<TestsBuild | null> {
    const entrypoints: string[] = [];
    for (const name of Object.keys(sources).filter((n) => n.endsWith(".rego"))) {
      if (!/\btest_/.test(sources[name])) continue;
      const { stdout } = await run(this.opaBin, ["parse", "--format", "json", name], { cwd: src, maxBuffer: 64 * 1024 * 1024 });
      const module = JSON.parse(stdout) as { package: { path: { value: string }[] }; rules?: { head: { name?: string; args?: unknown[]; ref?: { value: unknown }[] } }[] };
      const pkg = module.package.path.slice(1).map((t) => t.value);
      for (const rule of module.rules ?? []) {
        const ruleName = rule.head.name;
        if (!ruleName?.startsWith("test_") || rule.head.args?.length || (rule.head.ref?.length ?? 1) > 1) continue;
        const entrypoint = [...pkg, ruleName].join("/");
        if (!entrypoints.includes(entrypoint)) entrypoints.push(entrypoint);
      }
    }
    if (!entrypoints.length) return null;
    const out = path.join(path.dirname(src), "tests.tar.gz");
    try {
      return { files: await this.build(src, out, entrypoints, sources, true), entrypoints };
    } catch {
      // Tests may mock what WebAssembly cannot compile; `opa test` still runs them.
      return null;
    }
  }

  /**
   * `opa build -t wasm` of the sources (tests left out) for the given entrypoints, against CLAIIM's
   * capabilities, without the other publish gates. The bundle's WebAssembly is what CLAIIM runs.
   */
  buildWasm(sources: PolicySources, entrypoints: string[]): Promise<BundleFiles> {
    return this.inWorkspace(sources, (src, out) => this.build(src, out, entrypoints, sources));
  }

  private async build(src: string, out: string, entrypoints: string[], sources: PolicySources, withTests = false): Promise<BundleFiles> {
    const capabilities = await this.capabilities();
    const args = ["build", "-t", "wasm", ...entrypoints.flatMap((e) => ["-e", e]), "--capabilities", capabilities, ...(withTests ? [] : ["--ignore", "*_test.rego"]), "-o", out, "."];
    await this.opa(src, args, "text");
    const files = await readBundle(await fs.readFile(out));
    // Number segments of references into the bundle's data, as OPA's storage reads them (numeric-data-refs.ts).
    const modules = Object.keys(sources).filter((n) => n.endsWith(".rego") && (withTests || !n.endsWith("_test.rego")));
    if (!modules.some((n) => mayHaveNumericRefs(sources[n]))) return files;
    const asts: Record<string, ModuleAst> = {};
    for (const name of modules) {
      try {
        const { stdout } = await run(this.opaBin, ["parse", "--format", "json", "--json-include", "locations,-comments", name], { cwd: src, maxBuffer: 64 * 1024 * 1024 });
        asts[name] = JSON.parse(stdout) as ModuleAst;
      } catch {
        // `opa parse` cannot write some literals as JSON (a number written `.5`): such a module
        // is built as written, and the build above stands.
        return files;
      }
    }
    const rewritten = rewriteNumericDataRefs(sources, asts, JSON.parse(files.get("data.json")?.toString("utf8") ?? "{}"));
    if (!Object.keys(rewritten).length) return files;
    try {
      for (const [name, text] of Object.entries(rewritten)) await fs.writeFile(path.join(src, name), text);
      await this.opa(src, args, "text");
      return await readBundle(await fs.readFile(out));
    } finally {
      for (const name of Object.keys(rewritten)) await fs.writeFile(path.join(src, name), sources[name]);
    }
  }

  regoBundle(sources: PolicySources, revision: string): Promise<Buffer> {
    return this.inWorkspace(sources, async (src, out) => {
      await this.opa(src, ["build", "-t", "rego", "-r", revision, "--ignore", "*_test.rego", "-o", out, "."], "text");
      return fs.readFile(out);
    });
  }

  /** Writes the sources into a fresh folder, runs `work` with it and a path for a bundle, then removes it all. */
  private async inWorkspace<T>(sources: PolicySources, work: (src: string, out: string) => Promise<T>): Promise<T> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "claiim-policy-"));
    try {
      const src = path.join(dir, "src");
      for (const [name, text] of Object.entries(sources)) {
        await fs.mkdir(path.dirname(path.join(src, name)), { recursive: true });
        await fs.writeFile(path.join(src, name), text);
      }
      return await work(src, path.join(dir, "bundle.tar.gz"));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  private async opa(cwd: string, args: string[], errors: "json" | "text"): Promise<string> {
    try {
      const { stdout } = await run(this.opaBin, args, { cwd, maxBuffer: 16 * 1024 * 1024 });
      return stdout;
    } catch (err) {
      const e = err as { code?: string | number; stdout?: string; stderr?: string };
      if (e.code === "ENOENT") throw new Error(`OPA CLI not found at ${this.opaBin}: run make setup or set OPA_BIN`);
      let problems: OpaProblem[] = [];
      if (errors === "json") {
        try {
          const parsed = JSON.parse(e.stdout || e.stderr || "{}") as { errors?: { code: string; message: string; location?: { file: string; row: number; col: number } }[] };
          problems = (parsed.errors ?? []).map((p) => ({
            file: p.location?.file ?? "",
            row: p.location?.row ?? 0,
            col: p.location?.col ?? 0,
            code: p.code,
            message: p.message,
          }));
        } catch {
          problems = parseOpaText(e.stderr ?? "");
        }
      } else {
        problems = parseOpaText(e.stderr ?? "");
      }
      const output = (e.stderr || e.stdout || "").trim();
      for (const p of problems) {
        const name = /^undefined function (\S+)/.exec(p.message)?.[1];
        if (p.code === "rego_type_error" && name && REFUSED[name]) p.message = `${p.message}: CLAIIM refuses ${name} because ${REFUSED[name]}`;
      }
      const first = problems.find((p) => refusalCode(p) !== "policy_compile_failed") ?? problems[0];
      throw new UnprocessableError(
        first ? refusalCode(first) : "policy_compile_failed",
        first ? `${first.file}:${first.row}:${first.col}: ${first.message}` : `opa ${args[0]} failed: ${output.slice(0, 500)}`,
        { opa_errors: problems, opa_output: output.slice(0, 20000) },
      );
    }
  }

  /** The set's own tests must pass: a failure refuses the version, naming each failing test. */
  private async test(cwd: string): Promise<void> {
    let stdout: string;
    try {
      ({ stdout } = await run(this.opaBin, ["test", "--format", "json", "."], { cwd, maxBuffer: 16 * 1024 * 1024 }));
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      stdout = e.stdout ?? "";
      if (!stdout.trim().startsWith("[")) {
        throw new UnprocessableError("policy_tests_failed", `opa test failed: ${(e.stderr || stdout).trim().slice(0, 500)}`, { opa_output: (e.stderr || stdout).slice(0, 20000) });
      }
    }
    const results = JSON.parse(stdout) as { location: { file: string; row: number; col: number }; package: string; name: string; fail?: boolean; error?: { message?: string } }[];
    const failing = results.filter((r) => r.fail || r.error);
    if (failing.length === 0) return;
    const names = failing.map((r) => `${r.package}.${r.name}`);
    throw new UnprocessableError("policy_tests_failed", `${failing.length} of the policy's own tests failed: ${names.join(", ")}`, {
      failing_tests: failing.map((r) => ({
        name: `${r.package}.${r.name}`,
        file: r.location.file,
        row: r.location.row,
        col: r.location.col,
        ...(r.error?.message ? { error: r.error.message } : {}),
      })),
    });
  }

  /** Files `opa fmt` would change, with the unified diff of what it would do. */
  private async formatting(cwd: string, sources: PolicySources): Promise<PolicyWarning[]> {
    const { stdout } = await run(this.opaBin, ["fmt", "--list", "."], { cwd, maxBuffer: 16 * 1024 * 1024 });
    const warnings: PolicyWarning[] = [];
    for (const file of stdout.split("\n").map((l) => l.trim()).filter(Boolean)) {
      const name = file.replace(/^\.\//, "");
      const { stdout: formatted } = await run(this.opaBin, ["fmt", name], { cwd, maxBuffer: 16 * 1024 * 1024 });
      warnings.push({ file: name, code: "opa_fmt", message: "not formatted as `opa fmt` would format it", diff: createTwoFilesPatch(name, name, sources[name] ?? "", formatted) });
    }
    return warnings;
  }

  /**
   * OPA's own capabilities (builtin declarations, features, future keywords), keeping the builtins
   * that CLAIIM evaluates (see runtime/capabilities.ts).
   */
  private capabilities(): Promise<string> {
    this.capabilitiesFile ??= (async () => {
      const { stdout } = await run(this.opaBin, ["capabilities", "--current"], { maxBuffer: 16 * 1024 * 1024 });
      const document = capabilitiesDocument(JSON.parse(stdout), referenceNames());
      const file = path.join(await fs.mkdtemp(path.join(os.tmpdir(), "claiim-caps-")), "capabilities.json");
      await fs.writeFile(file, JSON.stringify(document));
      return file;
    })();
    this.capabilitiesFile.catch(() => (this.capabilitiesFile = null));
    return this.capabilitiesFile;
  }
}
