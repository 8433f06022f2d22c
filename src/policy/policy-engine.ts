import { contentDigest, fileSha256, parseManifest, readBundle, revisionOf, type BundleFiles } from "./bundle";
import type { EvaluationPool } from "./evaluation/pool";
import { ENTRYPOINT } from "./compiler";
import type { StoredBundle } from "./policy-store";
import type { EvalOutcome, PolicyHandle } from "./evaluation/types";

/** A bundle loaded into the evaluation workers, ready to evaluate. */
export interface ActivePolicy {
  version: number;
  revision: string;
  digest: string;
  activatedAt: Date;
  /** The bundle-signing key whose signature was checked before loading. */
  signedBy: string;
  /** The bundle's data document (data.json), as the policy sees it under `data`. */
  data: Record<string, unknown>;
  /**
   * Evaluates the decision entrypoint on `input` with the clock at `nowNs` (time.now_ns), within
   * the evaluation bounds. Never rejects: a failure, a deadline or the memory limit is an outcome.
   */
  evaluate(input: unknown, nowNs: bigint): Promise<EvalOutcome>;
  /** Gives back the workers' copy once nothing evaluates it any more (pooled policies only). */
  release?(): void;
}

export class BundleIntegrityError extends Error {}

/** Checks a bundle's OPA signature and returns the signing key's id; throws when it does not verify. */
export type BundleVerifier = (files: BundleFiles) => Promise<string>;

/**
 * A policy loaded in the evaluation pool. It is released from the workers when it has been retired
 * (replaced, stopped, done with) and the last evaluation that took it has finished.
 */
export class PooledPolicy implements ActivePolicy {
  private pending = 0;
  private retired = false;

  constructor(
    readonly version: number,
    readonly revision: string,
    readonly digest: string,
    readonly activatedAt: Date,
    readonly signedBy: string,
    readonly data: Record<string, unknown>,
    readonly pool: EvaluationPool,
    readonly handle: PolicyHandle,
  ) {}

  async evaluate(input: unknown, nowNs: bigint): Promise<EvalOutcome> {
    return (await evaluatePolicies([this], input, nowNs))[0];
  }

  acquire(): void {
    this.pending += 1;
  }

  done(): void {
    this.pending -= 1;
    if (this.retired && this.pending === 0) this.pool.release(this.handle);
  }

  release(): void {
    if (this.retired) return;
    this.retired = true;
    if (this.pending === 0) this.pool.release(this.handle);
  }
}

/**
 * Evaluates several policies on one input and clock: in one job of the pool when they share it
 * (the active version and its shadow, in the same worker), else one by one.
 */
export async function evaluatePolicies(policies: ActivePolicy[], input: unknown, nowNs: bigint): Promise<EvalOutcome[]> {
  const pooled = policies.filter((p): p is PooledPolicy => p instanceof PooledPolicy);
  if (pooled.length !== policies.length || new Set(pooled.map((p) => p.pool)).size > 1) {
    return Promise.all(policies.map((p) => p.evaluate(input, nowNs)));
  }
  if (!pooled.length) return [];
  for (const p of pooled) p.acquire();
  try {
    return await pooled[0].pool.evaluate(
      pooled.map((p) => p.handle),
      ENTRYPOINT,
      JSON.stringify(input),
      nowNs,
    );
  } finally {
    for (const p of pooled) p.done();
  }
}

/** The nanoseconds since the epoch of a recorded timestamp: time.now_ns for that decision. */
export function nanosOf(at: Date | string): bigint {
  const ms = typeof at === "string" ? Date.parse(at) : at.getTime();
  return BigInt(ms) * 1_000_000n;
}

/** Checks a stored bundle end to end and returns its WebAssembly module and data; nothing unverified goes further. */
export async function verifiedBundle(stored: StoredBundle, verify: BundleVerifier): Promise<{ wasm: Buffer; dataText: string; signedBy: string }> {
  const fail = (why: string): never => {
    throw new BundleIntegrityError(`policy version ${stored.version} refused: ${why}`);
  };
  if (fileSha256(stored.bundle) !== stored.fileSha256) fail("archive hash does not match the recorded hash");
  const files = await readBundle(stored.bundle).catch((err: Error) => fail(`archive is unreadable (${err.message})`));
  const signedBy = await verify(files).catch((err: Error) => fail(err.message));
  const digest = contentDigest(files);
  if (digest !== stored.digest) fail("content digest does not match the recorded digest");
  const manifest = parseManifest(files);
  if (manifest.revision !== stored.revision || manifest.revision !== revisionOf(stored.version, digest)) {
    fail("manifest revision does not match the recorded version and digest");
  }
  const wasmEntry = manifest.wasm?.find((w) => w.entrypoint === ENTRYPOINT);
  if (!wasmEntry) fail(`manifest declares no WebAssembly module for ${ENTRYPOINT}`);
  const wasm = files.get(wasmEntry!.module.replace(/^\/+/, ""));
  if (!wasm) fail(`bundle has no ${wasmEntry!.module}`);
  return { wasm: wasm!, dataText: files.get("data.json")?.toString("utf8") ?? "{}", signedBy };
}

/**
 * Checks a stored bundle end to end (archive hash, OPA signature, content digest, manifest
 * revision, entrypoint) and loads it into the evaluation workers.
 */
export async function instantiate(stored: StoredBundle, activatedAt: Date, verify: BundleVerifier, pool: EvaluationPool): Promise<PooledPolicy> {
  const { wasm, dataText, signedBy } = await verifiedBundle(stored, verify);
  const data = JSON.parse(dataText) as Record<string, unknown>;
  const handle = await pool.load(wasm, dataText).catch((err: Error) => {
    throw new BundleIntegrityError(`policy version ${stored.version} does not load: ${err.message}`);
  });
  return new PooledPolicy(stored.version, stored.revision, stored.digest, activatedAt, signedBy, data, pool, handle);
}

/**
 * Holds the active policy, and the shadow evaluated beside it. Swapping is one reference
 * assignment; a request that took the previous reference finishes on it, and the previous one
 * leaves the workers after that.
 */
export class PolicyEngine {
  private current: ActivePolicy | null = null;
  private shadowed: ActivePolicy | null = null;

  constructor(readonly pool: EvaluationPool) {}

  active(): ActivePolicy | null {
    return this.current;
  }

  swap(next: ActivePolicy): void {
    const previous = this.current;
    this.current = next;
    if (previous && previous !== next && previous !== this.shadowed) previous.release?.();
  }

  shadow(): ActivePolicy | null {
    return this.shadowed;
  }

  setShadow(next: ActivePolicy | null): void {
    const previous = this.shadowed;
    this.shadowed = next;
    if (previous && previous !== next && previous !== this.current) previous.release?.();
  }
}
