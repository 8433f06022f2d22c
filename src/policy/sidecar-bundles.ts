import { readBundle, writeBundle } from "./bundle";
import type { BundleSigner } from "./bundle-signing";
import type { PolicyCompiler } from "./compiler";
import type { PolicyEngine } from "./policy-engine";
import type { PolicyStore } from "./policy-store";

/** CLAIIM as the bundle server of OPA sidecars (GET /v1/bundles/claiim). */
export class SidecarBundles {
  private readonly built = new Map<number, Promise<Buffer>>();

  constructor(
    private readonly engine: PolicyEngine,
    private readonly store: PolicyStore,
    private readonly compiler: PolicyCompiler,
    private readonly signer: BundleSigner,
  ) {}

  /**
   * The active version as a standard OPA bundle for sidecars (OPA's bundle service API): built once
   * per version from the stored sources with `opa build -t rego`, carrying the same revision, and
   * signed like the stored bundle, so a sidecar with `signing` configured refuses anything else.
   */
  async active(): Promise<{ revision: string; bytes: Buffer } | null> {
    const active = this.engine.active();
    if (!active) return null;
    let bytes = this.built.get(active.version);
    if (!bytes) {
      const stored = await this.store.get(active.version);
      if (!stored) return null;
      bytes = this.compiler.regoBundle(stored.sources, stored.revision).then(async (archive) => writeBundle(await this.signer.sign(await readBundle(archive))));
      bytes.catch(() => this.built.delete(active.version));
      this.built.set(active.version, bytes);
    }
    return { revision: active.revision, bytes: await bytes };
  }
}
