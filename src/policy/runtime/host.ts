/*
 * The host side of CLAIIM's policy runtime, as one evaluation thread holds it: the builtin
 * implementations and the loading of compiled policies.
 */
import fs from "node:fs";
import { COMPLETE_TS, NATIVE_TS, REFUSED } from "./builtins";
import { compileHeld } from "./compile";
import { redirectNativeBuiltins } from "./native-overrides";
import { ReferenceBuiltins } from "./reference";
import { DELEGATE, Halt, WasmPolicy, type Builtin, type EvalContext } from "./wasm-policy";
import type { RegoValue } from "./value";

/** Thrown out of an evaluation that needs OPA's builtin module before it has started. */
export class NeedsReference extends Halt {
  constructor() {
    super("OPA's builtin module is starting");
  }
}

/**
 * A policy module with CLAIIM's redirections (native-overrides.ts), compiled. The redirections need
 * OPA's builtin module; without it, the library's own implementations stay.
 */
export function prepareModule(wasm: Uint8Array, redirect: boolean): { module: WebAssembly.Module; overrides: Map<number, string> } {
  const { bytes, overrides } = redirect ? redirectNativeBuiltins(wasm) : { bytes: wasm, overrides: new Map<number, string>() };
  return { module: new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), overrides };
}

/** The same, compiled off the calling thread. */
export async function prepareModuleAsync(wasm: Uint8Array, redirect: boolean): Promise<{ module: WebAssembly.Module; overrides: Map<number, string> }> {
  const { bytes, overrides } = redirect ? redirectNativeBuiltins(wasm) : { bytes: wasm, overrides: new Map<number, string>() };
  return { module: await compileHeld(bytes), overrides };
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
    const { module, overrides } = prepareModule(wasm, this.referenceAvailable());
    return this.loadModule(module, overrides, dataText);
  }

  /** Instantiates a module that prepareModule compiled. */
  loadModule(module: WebAssembly.Module, overrides: Map<number, string>, dataText: string | undefined): WasmPolicy {
    return WasmPolicy.load(module, { dataText, overrides, maxMemoryBytes: this.limits.maxMemoryBytes, builtin: (name) => this.builtin(name) });
  }

  /** True when the policy may call OPA's builtin module. */
  usesReference(policy: WasmPolicy): boolean {
    return policy.hostBuiltins.some((name) => !COMPLETE_TS.has(name)) || policy.overridden.some((name) => !COMPLETE_TS.has(name));
  }

  /** Starts OPA's builtin module now (about 0.3 s), outside any evaluation's deadline. */
  warmReference(): void {
    if (this.referenceAvailable()) this.referenceInstance().warm();
  }

  referenceWarm(): boolean {
    return this.reference?.started() ?? false;
  }

  builtin(name: string): Builtin | undefined {
    if (REFUSED[name]) return undefined;
    const own = NATIVE_TS[name];
    const reference = this.referenceAvailable() ? (args: RegoValue[], ctx: EvalContext) => this.referenceCall(name, args, ctx) : null;
    if (own && COMPLETE_TS.has(name)) return own;
    if (own && reference) {
      return (args, ctx) => {
        const result = own(args, ctx);
        return result === DELEGATE ? reference(args, ctx) : result;
      };
    }
    return reference ?? undefined;
  }

  private referenceCall(name: string, args: RegoValue[], ctx: EvalContext): RegoValue | undefined {
    const instance = this.referenceInstance();
    // Starting the module takes longer than an evaluation may: the worker starts it outside the
    // deadline and evaluates again (the outcome is the same: evaluation is deterministic).
    if (!instance.started()) throw new NeedsReference();
    return instance.call(name, args, ctx);
  }

  referenceAvailable(): boolean {
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
