/*
 * OPA's own builtin implementations (its Go `topdown` package), compiled to WebAssembly for WASI
 * by `make setup` from src/policy/runtime/reference/main.go, into .tools/opa-builtins.wasm.
 *
 * CLAIIM implements the builtins that policies call often in TypeScript (see builtins/); the long
 * tail (GraphQL, X.509, JSON Schema, text/template, Go time layouts, rego.parse_module, …) would
 * each need a port of a Go library to behave as OPA does, so CLAIIM runs OPA's code instead. A call
 * costs about 0.25 ms; the module starts in about 0.3 s and is loaded only by a policy that needs it.
 *
 * WARNING: the module's clock is the decision's clock (CLOCK_REALTIME reads the decision's
 * timestamp), so that, for instance, certificate validity is judged at the recorded time and a
 * replay gives the same answer.
 */
import fs from "node:fs";
import path from "node:path";
import type { WASI as WasiClass } from "node:wasi";
import { compileHeld } from "./compile";
import { withMemoryMaximum } from "./wasm-binary";
import { Halt, MemoryLimitError, type EvalContext } from "./wasm-policy";
import { type RegoValue } from "./value";
import { parseValue, writeValue } from "./value-text";

const ROOT = path.resolve(__dirname, __filename.endsWith(".ts") ? "../../.." : "../../../..");

/** Where `make setup` builds the module; CLAIIM_OPA_BUILTINS_WASM overrides it. */
export function referenceModulePath(env: NodeJS.ProcessEnv = process.env): string {
  return env.CLAIIM_OPA_BUILTINS_WASM || path.join(ROOT, ".tools/opa-builtins.wasm");
}

interface Exports {
  memory: WebAssembly.Memory;
  alloc(n: number): number;
  out(): number;
  call(n: number): number;
  names(): number;
}

/**
 * node:wasi, loaded without its ExperimentalWarning (printed once by every evaluation worker
 * otherwise). The preview1 interface CLAIIM uses is stable in practice; the warning says nothing
 * an operator can act on.
 */
function wasi(): typeof WasiClass {
  const emit = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    if (String(warning).includes("WASI")) return;
    return (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require("node:wasi") as typeof import("node:wasi")).WASI;
  } finally {
    process.emitWarning = emit;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An instance of the module. Calls are synchronous; one instance serves one thread. */
export class ReferenceBuiltins {
  private exports: Exports | null = null;
  private nowNs = 0n;

  constructor(private readonly module: WebAssembly.Module) {}

  /** Compiles the module file, with a maximum on its memory. Throws when the file is missing. */
  static compile(file: string, maxMemoryBytes: number): WebAssembly.Module {
    const bytes = fs.readFileSync(file);
    return new WebAssembly.Module(withMemoryMaximum(bytes, Math.floor(maxMemoryBytes / 65536)) as Uint8Array<ArrayBuffer>);
  }

  /** Starts the module now (about 0.3 s), rather than at its first call. */
  warm(): void {
    this.start();
  }

  started(): boolean {
    return this.exports !== null;
  }

  /** The same, compiled off the calling thread. */
  static async compileAsync(file: string, maxMemoryBytes: number): Promise<WebAssembly.Module> {
    const bytes = await fs.promises.readFile(file);
    return compileHeld(withMemoryMaximum(bytes, Math.floor(maxMemoryBytes / 65536)));
  }

  private start(): Exports {
    if (this.exports) return this.exports;
    const WASI = wasi();
    const wasiInstance = new WASI({ version: "preview1", args: [], env: {}, returnOnExit: false });
    const imports = wasiInstance.getImportObject() as { wasi_snapshot_preview1: Record<string, (...a: never[]) => number> };
    const wasiImports = imports.wasi_snapshot_preview1;
    const realClock = wasiImports.clock_time_get as unknown as (id: number, precision: bigint, ptr: number) => number;
    let memory: WebAssembly.Memory | null = null;
    const clock = (id: number, precision: bigint, ptr: number): number => {
      // CLOCK_REALTIME is the decision's time; the monotonic clock (the Go runtime's) runs on.
      if (id !== 0 || !memory) return realClock(id, precision, ptr);
      new DataView(memory.buffer).setBigUint64(ptr, this.nowNs, true);
      return 0;
    };
    const instance = new WebAssembly.Instance(this.module, { wasi_snapshot_preview1: { ...wasiImports, clock_time_get: clock } as unknown as WebAssembly.ModuleImports });
    memory = (instance.exports as unknown as Exports).memory;
    wasiInstance.initialize(instance);
    this.exports = instance.exports as unknown as Exports;
    return this.exports;
  }

  /** The builtins the module implements. */
  names(): string[] {
    const e = this.start();
    const n = e.names();
    return JSON.parse(decoder.decode(new Uint8Array(e.memory.buffer, e.out(), n))) as string[];
  }

  /** Calls a builtin; undefined when OPA's would be undefined (or fail, which is undefined without strict errors). */
  call(name: string, args: RegoValue[], ctx: EvalContext): RegoValue | undefined {
    const e = this.start();
    this.nowNs = ctx.nowNs;
    const bytes = encoder.encode(`${name}\0${ctx.nowNs}\0${writeValue(args)}`);
    let reply: string;
    try {
      const p = e.alloc(bytes.length);
      new Uint8Array(e.memory.buffer, p, bytes.length).set(bytes);
      const n = e.call(bytes.length);
      reply = decoder.decode(new Uint8Array(e.memory.buffer, e.out(), n));
    } catch (err) {
      // The Go runtime dies when it cannot grow its memory; this instance is of no further use.
      this.exports = null;
      if (err instanceof RangeError || /memory|exit/i.test(String((err as Error).message ?? err))) throw new MemoryLimitError(`${name} needed more memory than its limit`);
      throw new Halt(`${name}: ${(err as Error).message ?? String(err)}`);
    }
    switch (reply[0]) {
      case "V":
        return parseValue(reply.slice(1));
      case "U":
        return undefined;
      case "H":
        throw new Halt(`${name}: ${reply.slice(1)}`);
      default:
        throw new Error(`${name}: ${reply.slice(1)}`);
    }
  }
}
