/*
 * A policy compiled by `opa build -t wasm`, run with CLAIIM's host functions.
 *
 * This follows the ABI that @open-policy-agent/opa-wasm implements (OPA's WebAssembly ABI 1.2: the
 * one-call `opa_eval`), with three differences that make results exact:
 *   - input and data enter as the exact JSON text, never through JSON.stringify of parsed values;
 *   - builtin arguments and results cross as OPA's value syntax (opa_value_dump/opa_value_parse,
 *     as OPA's own Go SDK does), so numbers keep their text and sets stay sets (see value.ts);
 *   - the result is read as a value and turned into JSON the way OPA does (sets sorted).
 * A builtin that throws makes its call undefined, as OPA's evaluator does without strict builtin
 * errors; a Halt ends the evaluation. Memory has a maximum: past it the policy aborts with
 * MemoryLimitError.
 */
import { RegoSet, isPlainObject, type RegoValue } from "./value";
import { parseValue, toJSON, writeValue } from "./value-text";

export const WASM_PAGE = 64 * 1024;

/** What every builtin may read: the decision's clock, fixed for the whole evaluation. */
export interface EvalContext {
  /** time.now_ns: the decision's recorded timestamp, in nanoseconds since the epoch. */
  nowNs: bigint;
}

/**
 * What a TypeScript builtin returns for arguments outside the domain it implements exactly: the
 * call then goes to OPA's own implementation (reference.ts).
 */
export const DELEGATE: unique symbol = Symbol("delegate to OPA's implementation");

export type Builtin = (args: RegoValue[], ctx: EvalContext) => RegoValue | undefined | typeof DELEGATE;

/** An error that ends the evaluation instead of making the builtin call undefined. */
export class Halt extends Error {}

/** The policy aborted (OPA's runtime called opa_abort, or the WebAssembly code trapped). */
export class PolicyError extends Error {}

/** The policy needed more memory than its maximum. */
export class MemoryLimitError extends PolicyError {}

export interface WasmPolicyOptions {
  /** Builtin ids that redirectNativeBuiltins gave to native builtins it redirected to the host. */
  overrides?: Map<number, string>;
  /** The bundle's data document as JSON text. */
  dataText?: string;
  /** The implementation of each builtin that the module imports, by name. */
  builtin: (name: string) => Builtin | undefined;
  maxMemoryBytes: number;
}

interface Exports {
  memory?: WebAssembly.Memory;
  opa_malloc(n: number): number;
  opa_free(p: number): void;
  opa_json_parse(p: number, n: number): number;
  opa_value_parse(p: number, n: number): number;
  opa_value_dump(v: number): number;
  opa_json_dump(v: number): number;
  opa_heap_ptr_get(): number;
  opa_heap_ptr_set(p: number): void;
  opa_eval(reserved: number, entrypoint: number, data: number, input: number, inputLen: number, heap: number, wantValue: number): number;
  builtins(): number;
  entrypoints(): number;
  opa_wasm_abi_version?: WebAssembly.Global | number;
  opa_wasm_abi_minor_version?: WebAssembly.Global | number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function globalValue(g: WebAssembly.Global | number | undefined): number | undefined {
  return g === undefined ? undefined : typeof g === "number" ? g : (g.value as number);
}

export class WasmPolicy {
  private readonly exports: Exports;
  private readonly memory: WebAssembly.Memory;
  private readonly entrypointIds: Record<string, number>;
  /** Builtin functions the module calls through opa_builtinN, by the id it uses. */
  private readonly byId = new Map<number, { name: string; impl: Builtin }>();
  private dataAddr = 0;
  private dataHeapPtr = 0;
  private ctx: EvalContext = { nowNs: 0n };
  /** Names of the builtins the module calls on the host. */
  readonly hostBuiltins: string[];
  /** Native builtins redirected to the host (native-overrides.ts) that the module contains. */
  readonly overridden: string[];

  private constructor(module: WebAssembly.Module, options: WasmPolicyOptions) {
    const maximum = Math.max(2, Math.floor(options.maxMemoryBytes / WASM_PAGE));
    this.memory = new WebAssembly.Memory({ initial: Math.min(5, maximum), maximum });
    const call = (id: number, ...addrs: number[]): number => this.callBuiltin(id, addrs);
    const imports = {
      env: {
        memory: this.memory,
        opa_abort: (addr: number) => {
          const message = this.readString(addr);
          throw message === "opa_malloc: failed" ? new MemoryLimitError("the policy needed more memory than its limit") : new PolicyError(message);
        },
        opa_println: (addr: number) => void this.readString(addr),
        opa_builtin0: (id: number) => call(id),
        opa_builtin1: (id: number, _ctx: number, a: number) => call(id, a),
        opa_builtin2: (id: number, _ctx: number, a: number, b: number) => call(id, a, b),
        opa_builtin3: (id: number, _ctx: number, a: number, b: number, c: number) => call(id, a, b, c),
        opa_builtin4: (id: number, _ctx: number, a: number, b: number, c: number, d: number) => call(id, a, b, c, d),
      },
    };
    const instance = new WebAssembly.Instance(module, imports);
    this.exports = instance.exports as unknown as Exports;
    const major = globalValue(this.exports.opa_wasm_abi_version);
    const minor = globalValue(this.exports.opa_wasm_abi_minor_version) ?? 0;
    if (major !== 1 || minor < 2) throw new PolicyError(`unsupported OPA WebAssembly ABI ${major}.${minor}: CLAIIM runs 1.2 and later 1.x`);
    const ids = this.dumpJSON(this.exports.builtins()) as Record<string, number>;
    const missing: string[] = [];
    for (const [name, id] of Object.entries(ids)) {
      const impl = options.builtin(name);
      if (impl) this.byId.set(id, { name, impl });
      else missing.push(name);
    }
    for (const [id, name] of options.overrides ?? []) {
      const impl = options.builtin(name);
      if (impl) this.byId.set(id, { name, impl });
      else missing.push(name);
    }
    // WARNING: a module that calls a builtin CLAIIM does not implement is refused at load, never
    // left to fail at every evaluation.
    if (missing.length) throw new PolicyError(`the policy calls builtins that CLAIIM does not implement: ${missing.sort().join(", ")}`);
    this.hostBuiltins = Object.keys(ids).sort();
    this.overridden = [...(options.overrides ?? new Map()).values()];
    this.entrypointIds = this.dumpJSON(this.exports.entrypoints()) as Record<string, number>;
    this.dataHeapPtr = this.exports.opa_heap_ptr_get();
    this.dataAddr = this.loadJSON(options.dataText ?? "{}");
    this.dataHeapPtr = this.exports.opa_heap_ptr_get();
  }

  static load(module: WebAssembly.Module, options: WasmPolicyOptions): WasmPolicy {
    return new WasmPolicy(module, options);
  }

  entrypoints(): string[] {
    return Object.keys(this.entrypointIds);
  }

  /** Bytes of WebAssembly memory in use (it only grows). */
  memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  /**
   * Evaluates an entrypoint on an input given as JSON text, and returns OPA's result set in JSON
   * form: the list of `{"result": value}` (empty when undefined).
   */
  evaluate(entrypoint: string, inputText: string | undefined, ctx: EvalContext): { result: RegoValue }[] {
    const id = this.entrypointIds[entrypoint];
    if (id === undefined) throw new PolicyError(`entrypoint ${entrypoint} is not in this policy`);
    const value = this.evaluateValue(id, inputText, ctx);
    const set = value instanceof RegoSet ? value.sorted() : Array.isArray(value) ? value : [];
    return set.map((r) => (isPlainObject(r) ? ({ result: toJSON(r.result) } as { result: RegoValue }) : { result: null }));
  }

  private evaluateValue(entrypoint: number, inputText: string | undefined, ctx: EvalContext): RegoValue {
    this.ctx = ctx;
    let inputAddr = 0;
    let inputLen = 0;
    if (inputText !== undefined) {
      const bytes = encoder.encode(inputText);
      inputAddr = this.dataHeapPtr;
      inputLen = bytes.byteLength;
      this.ensure(inputAddr + inputLen);
      new Uint8Array(this.memory.buffer).set(bytes, inputAddr);
    }
    const heapPtr = this.dataHeapPtr + inputLen;
    let resultAddr: number;
    try {
      resultAddr = this.exports.opa_eval(0, entrypoint, this.dataAddr, inputAddr, inputLen, heapPtr, 1);
    } catch (err) {
      throw this.classify(err);
    }
    return parseValue(this.readString(resultAddr));
  }

  private classify(err: unknown): Error {
    if (err instanceof PolicyError || err instanceof Halt) return err;
    if (err instanceof RangeError && /memory/i.test(err.message)) return new MemoryLimitError("the policy needed more memory than its limit");
    if (err instanceof RangeError) return new PolicyError(`the policy failed: ${err.message}`);
    if (err instanceof WebAssembly.RuntimeError) return new PolicyError(`the policy trapped: ${err.message}`);
    return err instanceof Error ? err : new PolicyError(String(err));
  }

  /** Grows memory so that `end` is addressable, or throws MemoryLimitError. */
  private ensure(end: number): void {
    const delta = end - this.memory.buffer.byteLength;
    if (delta <= 0) return;
    try {
      this.memory.grow(Math.ceil(delta / WASM_PAGE));
    } catch {
      throw new MemoryLimitError("the input does not fit in the policy's memory limit");
    }
  }

  private callBuiltin(id: number, addrs: number[]): number {
    const entry = this.byId.get(id);
    if (!entry) throw new PolicyError(`the policy called builtin ${id}, which it did not declare`);
    const args = addrs.map((a) => this.dumpValue(a));
    let result: RegoValue | undefined | typeof DELEGATE;
    try {
      result = entry.impl(args, this.ctx);
      if (result === DELEGATE) throw new Halt(`${entry.name}: no implementation for these arguments`);
    } catch (err) {
      // Without strict builtin errors, OPA makes a failing builtin call undefined.
      if (err instanceof Halt || err instanceof PolicyError) throw err;
      if (err instanceof RangeError && /Invalid (string|array) length|allocation/i.test(err.message)) throw new MemoryLimitError(`${entry.name}: ${err.message}`);
      return 0;
    }
    if (result === undefined) return 0;
    return this.loadValue(writeValue(result));
  }

  private dumpValue(addr: number): RegoValue {
    const p = this.exports.opa_value_dump(addr);
    const text = this.readString(p);
    this.exports.opa_free(p);
    return parseValue(text);
  }

  private dumpJSON(addr: number): unknown {
    return JSON.parse(this.readString(this.exports.opa_json_dump(addr)));
  }

  private loadJSON(text: string): number {
    const bytes = encoder.encode(text);
    const p = this.exports.opa_malloc(bytes.byteLength);
    new Uint8Array(this.memory.buffer).set(bytes, p);
    const v = this.exports.opa_json_parse(p, bytes.byteLength);
    if (v === 0) throw new PolicyError("the data document is not valid JSON");
    return v;
  }

  private loadValue(text: string): number {
    const bytes = encoder.encode(text);
    const p = this.exports.opa_malloc(bytes.byteLength);
    new Uint8Array(this.memory.buffer).set(bytes, p);
    const v = this.exports.opa_value_parse(p, bytes.byteLength);
    if (v === 0) throw new PolicyError("a builtin returned a value the policy cannot read");
    return v;
  }

  private readString(addr: number): string {
    const mem = new Uint8Array(this.memory.buffer);
    const end = mem.indexOf(0, addr);
    return decoder.decode(mem.subarray(addr, end < 0 ? mem.length : end));
  }
}
