// Environment variables, parsed with zod: each variable is declared once with its type, default
// and meaning, and every mistake is reported at start-up, all at once, naming the variable.
// An empty variable counts as unset.
import { z } from "zod";

/** A whole number of at least `min`, from text; `fallback` when unset. */
export function wholeNumber(fallback: number, min = 1) {
  return z
    .string()
    .regex(/^\d+$/, `must be a whole number, at least ${min}`)
    .transform(Number)
    .refine((n) => Number.isSafeInteger(n) && n >= min, `must be a whole number, at least ${min}`)
    .optional()
    .transform((n) => n ?? fallback);
}

/** Text, `fallback` when unset. */
export function text(fallback: string) {
  return z
    .string()
    .optional()
    .transform((v) => v ?? fallback);
}

/** Text that may be unset (undefined). */
export function optionalText() {
  return z.string().optional();
}

/** One of the given words, `fallback` when unset. */
export function oneOf<T extends string>(values: readonly [T, ...T[]], fallback: T) {
  const words = values.length > 1 ? `${values.slice(0, -1).join(", ")} or ${values[values.length - 1]}` : values[0];
  return z
    .enum(values, { message: `must be ${words}` })
    .optional()
    .transform((v): T => (v as T | undefined) ?? fallback);
}

/** Parses the variables a schema declares; throws one error naming every variable that is wrong. */
export function parseEnv<S extends z.ZodRawShape>(shape: S, env: NodeJS.ProcessEnv): z.infer<z.ZodObject<S>> {
  const set = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const result = z.object(shape).safeParse(set);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => `${i.path.join(".")} ${i.message}, got ${JSON.stringify(set[String(i.path[0])])}`);
  throw new Error(`configuration: ${problems.join("; ")}`);
}
