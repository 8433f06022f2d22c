/*
 * Which Rego builtins CLAIIM can evaluate, and how.
 *
 * A compiled policy calls a builtin in one of three ways: OPA's WebAssembly runtime implements it
 * natively (most of the language core); CLAIIM implements it in TypeScript (the builtins that
 * policies call on every decision: time, semantic versions, networks, hashes, objects, strings…);
 * or OPA's own Go implementation runs in a WebAssembly module beside the policy (reference.ts; the
 * long tail). A builtin is declared to the compiler only when one of them implements it, so a
 * policy that calls anything else is refused at publish, never at evaluation.
 *
 * The builtins that would let a decision depend on something other than its recorded input stay
 * refused, with the reason given to the policy author.
 */
import type { Builtin } from "../wasm-policy";
import { numberBuiltins } from "./numbers";
import { stringBuiltins } from "./strings";
import { timeBuiltins } from "./time";

/** Refused builtins, and why: the refusal names the reason. */
export const REFUSED: Readonly<Record<string, string>> = {
  "http.send": "a decision depends only on its recorded input, so CLAIIM makes no network call while deciding; put what the policy needs in the bundle's data or in the input",
  "net.lookup_ip_addr": "a decision depends only on its recorded input, so CLAIIM makes no DNS lookup while deciding; a replay would not see the same answer",
  "rand.intn": "a decision must replay to the same answer, which a random number would not give",
  "uuid.rfc4122": "a decision must replay to the same answer, which a random UUID would not give",
  "opa.runtime": "the runtime's configuration and environment are not part of a decision's recorded input",
};

/**
 * Builtins that never reach the host, so they need no implementation: OPA's compiler replaces
 * rego.metadata.* by constants, and `opa build` removes print() calls (a decision has no console;
 * internal.print, what print becomes, is implemented all the same).
 */
export const COMPILER_HANDLED: ReadonlySet<string> = new Set(["rego.metadata.chain", "rego.metadata.rule", "print"]);

/**
 * CLAIIM's own implementations, by name. Some implement only the common case exactly and return
 * DELEGATE for the rest, which OPA's implementation then handles; those not in COMPLETE_TS.
 */
export const NATIVE_TS: Readonly<Record<string, Builtin>> = {
  ...timeBuiltins,
  ...stringBuiltins,
  ...numberBuiltins,
};

/** The TypeScript builtins that never delegate. */
export const COMPLETE_TS: ReadonlySet<string> = new Set(["time.now_ns"]);
