/*
 * Time builtins. WARNING: time.now_ns is the decision's recorded timestamp, never the wall clock,
 * so that a replay or a shadow evaluation reproduces the decision exactly.
 */
import type { Builtin } from "../wasm-policy";
import { intValue } from "../value";

export const timeBuiltins: Record<string, Builtin> = {
  "time.now_ns": (_args, ctx) => intValue(ctx.nowNs),
};
