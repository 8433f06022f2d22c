import { fieldsOf, type Transactional } from "./transactional";
import { ConflictError } from "../../../src/lib/errors";
import type { BundleSummary, PolicyState, PolicyStore, ShadowState, StoredBundle } from "../../../src/policy/policy-store";

export class FakePolicyStore implements PolicyStore, Transactional {
  bundles = new Map<number, StoredBundle>();
  current: PolicyState = { activeVersion: null, activatedAt: null, activatedBy: null, lastError: null, lastErrorAt: null, shadow: null, shadowTrips: 0 };
  private readonly saved = fieldsOf(this as FakePolicyStore, ["bundles", "current"]);
  snapshot = () => this.saved.snapshot();
  restore = (s: unknown) => this.saved.restore(s);

  async latestVersion(): Promise<number> {
    return Math.max(0, ...this.bundles.keys());
  }
  async insert(b: StoredBundle): Promise<void> {
    if (this.bundles.has(b.version)) throw new ConflictError("policy_version_taken", "taken");
    this.bundles.set(b.version, { ...b, bundle: Buffer.from(b.bundle) });
  }
  async get(version: number): Promise<StoredBundle | null> {
    return this.bundles.get(version) ?? null;
  }
  async list(): Promise<BundleSummary[]> {
    return [...this.bundles.values()].sort((a, b) => a.version - b.version).map(({ bundle: _b, sources: _s, ...rest }) => rest);
  }
  async state(): Promise<PolicyState> {
    return { ...this.current };
  }
  async setActive(version: number, by: string, at: Date): Promise<void> {
    this.current = { ...this.current, activeVersion: version, activatedBy: by, activatedAt: at };
  }
  async setShadow(shadow: ShadowState | null): Promise<void> {
    this.current = { ...this.current, shadow, shadowTrips: 0 };
  }
  async countShadowTrip(version: number): Promise<number | null> {
    if (this.current.shadow?.version !== version) return null;
    this.current = { ...this.current, shadowTrips: this.current.shadowTrips + 1 };
    return this.current.shadowTrips;
  }
  async setError(message: string, at: Date): Promise<void> {
    this.current = { ...this.current, lastError: message, lastErrorAt: at };
  }
}
