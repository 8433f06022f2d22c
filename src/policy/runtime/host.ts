/*
 * The host side of CLAIIM's policy runtime, as one evaluation thread holds it: the builtin
 * implementations and the loading of compiled policies.
 */
import fs from "node:fs";
import { NATIVE_TS, REFUSED } from "./builtins";
import { redirectNativeBuiltins } from "./native-overrides";
import { ReferenceBuiltins } from "./reference";
import { WasmPolicy, type Builtin } from "./wasm-policy";

/** A policy module with CLAIIM's redirections (native-overrides.ts), compiled. */
export function prepareModule(wasm: Uint8Array): { module: WebAssembly.Module; overrides: Map<number, string> } {
  const { bytes, overrides } = redirectNativeBuiltins(wasm);
  return { module: new WebAssembly.Module(bytes), overrides };
}

/** The same, compiled off the calling thread. */
export async function prepareModuleAsync(wasm: Uint8Array): Promise<{ module: WebAssembly.Module; overrides: Map<number, string> }> {
  const { bytes, overrides } = redirectNativeBuiltins(wasm);
  return { module: await WebAssembly.compile(bytes), overrides };
}

export interface RuntimeLimits {
  /** Largest WebAssembly memory of a policy, and of OPA's builtin module. */
  maxMemoryBytes: number;
}

export class PolicyRuntime {
  private reference: ReferenceBuiltins | null = null;
  private referenceModule: WebAssembly.Module | null | undefined;

  constructor(
    readonly limits: RuntimeLimits,
    /** OPA's builtin module (.tools/opa-builtins.wasm), or null when it is not built. */
    private readonly referenceFile: string | null,
    /** The same module already compiled (with its memory maximum), to skip compiling it again. */
    referenceModule: WebAssembly.Module | null = null,
  ) {
    if (referenceModule) this.referenceModule = referenceModule;
  }

  /** Compiles the policy module and instantiates it with its data (JSON text). */
  load(wasm: Uint8Array, dataText: string | undefined): WasmPolicy {
    const { module, overrides } = prepareModule(wasm);
    return this.loadModule(module, overrides, dataText);
  }

  /** Instantiates a module that prepareModule compiled. */
  loadModule(module: WebAssembly.Module, overrides: Map<number, string>, dataText: string | undefined): WasmPolicy {
    return WasmPolicy.load(module, { dataText, overrides, maxMemoryBytes: this.limits.maxMemoryBytes, builtin: (name) => this.builtin(name) });
  }

  /** Starts OPA's builtin module when the policy calls any of its builtins; true when it does. */
  warmUp(policy: WasmPolicy): boolean {
    const needs = policy.hostBuiltins.some((name) => !NATIVE_TS[name]);
    if (needs && this.referenceAvailable()) this.referenceInstance().warm();
    return needs;
  }

  builtin(name: string): Builtin | undefined {
    if (REFUSED[name]) return undefined;
    const own = NATIVE_TS[name];
    if (own) return own;
    if (!this.referenceAvailable()) return undefined;
    return (args, ctx) => this.referenceInstance().call(name, args, ctx);
  }

  private referenceAvailable(): boolean {
    if (this.referenceModule === undefined) {
      this.referenceModule = this.referenceFile && fs.existsSync(this.referenceFile) ? ReferenceBuiltins.compile(this.referenceFile, this.limits.maxMemoryBytes) : null;
    }
    return this.referenceModule !== null;
  }

  private referenceInstance(): ReferenceBuiltins {
    this.reference ??= new ReferenceBuiltins(this.referenceModule!);
    return this.reference;
  }
}
