// Policy evaluation and bundle signing, from the environment. The evaluation variables are parsed
// with the rest of the environment, so that every wrong variable is named at once (config.ts).
import { createPrivateKey, createPublicKey } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { z } from "zod";
import { optionalText, wholeNumber } from "../lib/env";
import type { ExternalBundleKeys } from "./bundle-signing";

export interface EvaluationSettings {
  /** Deadline of one evaluation, in milliseconds. */
  timeoutMs: number;
  /** WebAssembly memory maximum of a policy, and heap limit of an evaluation worker, in bytes. */
  maxMemoryBytes: number;
  /** Evaluation worker threads. */
  workers: number;
  /** A shadow or a replay is stopped after this many of its evaluations exceeded the bounds. */
  tripsToStop: number;
  /** How many of the last recorded decisions the budget gate evaluates a candidate on. */
  budgetSamples: number;
  /** OPA's builtin module (built by make setup); null: look in .tools/. */
  referenceModule: string | null;
}

export const EVALUATION_ENV = {
  CLAIIM_EVAL_TIMEOUT_MS: wholeNumber(100),
  CLAIIM_EVAL_MAX_MEMORY_MB: wholeNumber(256),
  /** Unset (0): see evaluationThreads. */
  CLAIIM_EVAL_WORKERS: wholeNumber(0),
  CLAIIM_EVAL_TRIPS_TO_STOP: wholeNumber(3),
  CLAIIM_BUDGET_SAMPLES: wholeNumber(1000, 0),
  CLAIIM_OPA_BUILTINS_WASM: optionalText(),
};

/**
 * Evaluation threads per process, unless CLAIIM_EVAL_WORKERS says: 2 for a process alone (while one
 * evaluation runs to its deadline, the other thread answers), 1 in each of several serving
 * processes (CLAIIM_WORKERS > 1), where the other processes answer meanwhile. Measured in worker
 * mode with two workers on two cores: a quarter less CPU per decision with one thread each than with
 * two (docs/benchmark.md).
 */
export function evaluationThreads(configured: number, servingProcesses: number): number {
  return configured > 0 ? configured : servingProcesses > 1 ? 1 : 2;
}

export function evaluationSettings(e: z.infer<z.ZodObject<typeof EVALUATION_ENV>>, cwd: string, servingProcesses: number): EvaluationSettings {
  return {
    timeoutMs: e.CLAIIM_EVAL_TIMEOUT_MS,
    maxMemoryBytes: e.CLAIIM_EVAL_MAX_MEMORY_MB * 1024 * 1024,
    workers: evaluationThreads(e.CLAIIM_EVAL_WORKERS, servingProcesses),
    tripsToStop: e.CLAIIM_EVAL_TRIPS_TO_STOP,
    budgetSamples: e.CLAIIM_BUDGET_SAMPLES,
    referenceModule: e.CLAIIM_OPA_BUILTINS_WASM ? path.resolve(cwd, e.CLAIIM_OPA_BUILTINS_WASM) : null,
  };
}

/** CLAIIM_BUNDLE_SIGNING_KEY_FILE and CLAIIM_BUNDLE_TRUSTED_KEYS_FILE: a bundle-signing key kept outside the database. */
export function bundleSigning(env: NodeJS.ProcessEnv, cwd: string): ExternalBundleKeys | null {
  if (!env.CLAIIM_BUNDLE_SIGNING_KEY_FILE) {
    if (env.CLAIIM_BUNDLE_TRUSTED_KEYS_FILE) throw new Error("CLAIIM_BUNDLE_TRUSTED_KEYS_FILE needs CLAIIM_BUNDLE_SIGNING_KEY_FILE");
    return null;
  }
  const privateKeyPem = fs.readFileSync(path.resolve(cwd, env.CLAIIM_BUNDLE_SIGNING_KEY_FILE), "utf8");
  let curve: string | undefined;
  try {
    curve = createPrivateKey(privateKeyPem).asymmetricKeyDetails?.namedCurve;
  } catch {
    throw new Error("CLAIIM_BUNDLE_SIGNING_KEY_FILE does not hold a PEM private key");
  }
  if (curve !== "prime256v1") throw new Error("CLAIIM_BUNDLE_SIGNING_KEY_FILE must hold an EC P-256 key (ES256)");
  if (!env.CLAIIM_BUNDLE_TRUSTED_KEYS_FILE) return { privateKeyPem, trusted: [] };
  let trusted: Record<string, string>[];
  try {
    trusted = (JSON.parse(fs.readFileSync(path.resolve(cwd, env.CLAIIM_BUNDLE_TRUSTED_KEYS_FILE), "utf8")) as { keys: Record<string, string>[] }).keys;
    for (const jwk of trusted) createPublicKey({ key: jwk, format: "jwk" });
  } catch {
    throw new Error("CLAIIM_BUNDLE_TRUSTED_KEYS_FILE must be a JWKS ({\"keys\": [...]}) of EC P-256 public keys");
  }
  if (!Array.isArray(trusted) || trusted.some((k) => k.kty !== "EC" || k.crv !== "P-256" || "d" in k)) {
    throw new Error("CLAIIM_BUNDLE_TRUSTED_KEYS_FILE must be a JWKS of EC P-256 public keys, without private parts");
  }
  return { privateKeyPem, trusted };
}
