/*
 * The capabilities CLAIIM gives `opa check` and `opa build`: OPA's own (`opa capabilities
 * --current`: its builtin declarations, language features and future keywords), keeping only the
 * builtins that CLAIIM can evaluate, and the WebAssembly ABI of the runtime.
 */
import fs from "node:fs";
import path from "node:path";
import { COMPILER_HANDLED, COMPLETE_TS, REFUSED } from "./builtins";
import { ReferenceBuiltins, referenceModulePath } from "./reference";

interface OpaCapabilities {
  builtins: { name: string }[];
  features?: string[];
  future_keywords?: string[];
  wasm_abi_versions?: unknown[];
}

/** The builtins of opa-wasm's runtime: natively in OPA's WebAssembly library, or by the host. */
function wasmRuntime(): { builtins: Set<string>; abi: unknown[] } {
  const file = path.join(path.dirname(require.resolve("@open-policy-agent/opa-wasm")), "..", "capabilities.json");
  const caps = JSON.parse(fs.readFileSync(file, "utf8")) as OpaCapabilities;
  return { builtins: new Set(caps.builtins.map((b) => b.name)), abi: caps.wasm_abi_versions ?? [] };
}

/**
 * The builtins that the OPA reference module implements, or an empty list when it is not built.
 * `make setup` writes them next to the module; otherwise they are read from the module itself.
 */
export function referenceNames(file = referenceModulePath()): string[] {
  const list = `${file.replace(/\.wasm$/, "")}.json`;
  try {
    const stat = fs.statSync(file);
    const cached = fs.existsSync(list) && fs.statSync(list).mtimeMs >= stat.mtimeMs ? (JSON.parse(fs.readFileSync(list, "utf8")) as string[]) : null;
    if (cached) return cached;
    const names = new ReferenceBuiltins(ReferenceBuiltins.compile(file, 512 * 1024 * 1024)).names();
    fs.writeFileSync(list, JSON.stringify(names));
    return names;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

export interface BuiltinSupport {
  declared: string[];
  /** OPA builtins that are not declared, each with the reason. */
  refused: Record<string, string>;
}

/** Which of OPA's builtins CLAIIM declares, and why the others are refused. */
export function builtinSupport(current: OpaCapabilities, reference: string[]): BuiltinSupport {
  const runtime = wasmRuntime().builtins;
  const ref = new Set(reference);
  const declared: string[] = [];
  const refused: Record<string, string> = {};
  for (const { name } of current.builtins) {
    if (REFUSED[name]) refused[name] = REFUSED[name];
    else if (COMPLETE_TS.has(name) || ref.has(name) || COMPILER_HANDLED.has(name) || (runtime.has(name) && !needsHost(name))) declared.push(name);
    else refused[name] = ref.size ? "CLAIIM has no implementation of it" : "OPA's builtin implementations (.tools/opa-builtins.wasm) are not built: run make setup with Go installed";
  }
  return { declared, refused };
}

/** Builtins that opa-wasm's own capabilities list but that its JavaScript SDK implements on the host. */
const SDK_HOST = new Set(["sprintf", "json.is_valid", "yaml.is_valid", "yaml.marshal", "yaml.unmarshal", "time.diff", "rand.intn"]);
function needsHost(name: string): boolean {
  return SDK_HOST.has(name);
}

/** The capabilities document for `opa check --capabilities` and `opa build --capabilities`. */
export function capabilitiesDocument(current: OpaCapabilities, reference: string[]): Record<string, unknown> {
  const { declared } = builtinSupport(current, reference);
  const keep = new Set(declared);
  return {
    builtins: current.builtins.filter((b) => keep.has(b.name)),
    features: current.features ?? [],
    future_keywords: current.future_keywords ?? [],
    wasm_abi_versions: wasmRuntime().abi,
  };
}
