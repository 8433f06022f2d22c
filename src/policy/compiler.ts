// What CLAIIM asks of a policy compiler (OpaCliCompiler, opa-compiler.ts, is the one it has): the
// sources it takes, what it answers, and the rules a set's file paths must follow.
import { InputError } from "../lib/errors";
import type { BundleFiles } from "./bundle";

/** The decision entrypoint every CLAIIM policy set must define. */
export const ENTRYPOINT = "claiim/decision";

export interface OpaProblem {
  file: string;
  row: number;
  col: number;
  code: string;
  message: string;
}

/** Policy sources: relative path to file text. */
export type PolicySources = Record<string, string>;

/** Something to look at that does not refuse a version, such as formatting that `opa fmt` would change. */
export interface PolicyWarning {
  file: string;
  code: string;
  message: string;
  diff?: string;
}

export interface Compiled {
  files: BundleFiles;
  warnings: PolicyWarning[];
}

/** The set's tests compiled to WebAssembly, one entrypoint per test rule, for the budget gate. */
export interface TestsBuild {
  /** `opa build -t wasm` of the set with its tests, one entrypoint per test rule. */
  files: BundleFiles;
  entrypoints: string[];
}

/**
 * Runs between the build and `opa test`, on the built bundle and the tests' build (null when the
 * tests do not compile to WebAssembly): the budget gate, which refuses a policy that loops or
 * explodes before `opa test` runs it without bounds.
 */
export type CompileGate = (files: BundleFiles, tests: TestsBuild | null) => Promise<void>;

export interface PolicyCompiler {
  /**
   * Runs the publish gates in order and compiles: `opa check --strict` against the runtime's
   * capabilities, `opa build -t wasm`, the `gate` (the budget), `opa test` on the set's own tests.
   * Throws UnprocessableError with OPA's problems at the first gate that fails.
   */
  compile(sources: PolicySources, gate?: CompileGate): Promise<Compiled>;
  /** The set's tests compiled to WebAssembly (null when it has none, or they do not compile). */
  buildTests(sources: PolicySources): Promise<TestsBuild | null>;
  /** A standard OPA bundle of the sources (Rego, not WebAssembly) stamped with `revision`, for OPA sidecars. */
  regoBundle(sources: PolicySources, revision: string): Promise<Buffer>;
}

const SOURCE_PATH = /^(?!\/)(?!.*(^|\/)\.\.?(\/|$))[A-Za-z0-9._\-/]+\.(rego|json|yaml|yml)$/;

const MAX_SEGMENT_LENGTH = 255;
const MAX_PATH_LENGTH = 1024;

export function checkSourcePaths(sources: PolicySources): void {
  const names = Object.keys(sources);
  if (!names.some((n) => n.endsWith(".rego") && !n.endsWith("_test.rego"))) {
    throw new InputError("policy_empty", "a policy set needs at least one .rego module that is not a test", [
      { path: "files", message: "no policy module" },
    ]);
  }
  // A segment longer than file systems allow (255 bytes) would fail when the set is written out for OPA.
  const bad = names.filter((n) => !SOURCE_PATH.test(n) || n.length > MAX_PATH_LENGTH || n.split("/").some((segment) => segment.length > MAX_SEGMENT_LENGTH));
  if (bad.length) {
    throw new InputError(
      "policy_path_invalid",
      `policy file paths must be relative, without '.' or '..' segments, end in .rego, .json, .yaml or .yml, and have segments of at most ${MAX_SEGMENT_LENGTH} characters (${MAX_PATH_LENGTH} in all)`,
      bad.map((n) => ({ path: `files.${n}`, message: "invalid policy file path" })),
    );
  }
}
