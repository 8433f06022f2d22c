import { loadPolicy } from "@open-policy-agent/opa-wasm";
import { contentDigest, fileSha256, parseManifest, readBundle, revisionOf, type BundleFiles } from "./bundle";
import { ENTRYPOINT } from "./opa-compiler";
import type { StoredBundle } from "./policy-store";

/** A bundle loaded into the WebAssembly runtime, ready to evaluate. */
export interface ActivePolicy {
  version: number;
  revision: string;
  digest: string;
  activatedAt: Date;
  /** The bundle-signing key whose signature was checked before loading. */
  signedBy: string;
  /** The bundle's data document (data.json), as the policy sees it under `data`. */
  data: Record<string, unknown>;
  /** Evaluates the decision entrypoint. Synchronous; throws when the policy fails. */
  evaluate(input: unknown): unknown;
}

export class BundleIntegrityError extends Error {}

/** Checks a bundle's OPA signature and returns the signing key's id; throws when it does not verify. */
export type BundleVerifier = (files: BundleFiles) => Promise<string>;

/**
 * Checks a stored bundle end to end (archive hash, OPA signature, content digest, manifest
 * revision, entrypoint) and loads it. Nothing unverified reaches the runtime.
 */
export async function instantiate(stored: StoredBundle, activatedAt: Date, verify: BundleVerifier): Promise<ActivePolicy> {
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
  const dataFile = files.get("data.json");
  const data = dataFile ? (JSON.parse(dataFile.toString("utf8")) as Record<string, unknown>) : {};
  const policy = await loadPolicy(wasm!);
  policy.setData(data);
  const entrypoint = ENTRYPOINT;
  return {
    version: stored.version,
    revision: stored.revision,
    digest: stored.digest,
    activatedAt,
    signedBy,
    data,
    evaluate(input: unknown): unknown {
      const results = policy.evaluate(input, entrypoint) as { result: unknown }[];
      return results.length ? results[0].result : undefined;
    },
  };
}

/**
 * Holds the active policy, and the shadow evaluated beside it. Swapping is one reference
 * assignment; a request that took the previous reference finishes on it.
 */
export class PolicyEngine {
  private current: ActivePolicy | null = null;
  private shadowed: ActivePolicy | null = null;

  active(): ActivePolicy | null {
    return this.current;
  }

  swap(next: ActivePolicy): void {
    this.current = next;
  }

  shadow(): ActivePolicy | null {
    return this.shadowed;
  }

  setShadow(next: ActivePolicy | null): void {
    this.shadowed = next;
  }
}
