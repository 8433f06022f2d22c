import { InputError, NotFoundError } from "../lib/errors";
import type { BundleSigner } from "./bundle-signing";
import type { PolicySources } from "./compiler";
import type { PolicyEngine } from "./policy-engine";
import type { PolicyStore } from "./policy-store";
import { diffSources, statusView, versionView, type PolicyDiff, type PolicyStatus, type PolicyVersionView } from "./policy-views";

/** Reading policies: the versions, one version's files, the diff between two, the status, the bundle-signing keys. */
export class PolicyReads {
  constructor(
    private readonly deps: {
      store: PolicyStore;
      engine: PolicyEngine;
      signer: BundleSigner;
      /** Decisions made under each policy version, from Chron. */
      decisionCounts: (orgId?: string) => Promise<{ version: number | null; count: number }[]>;
    },
  ) {}

  signingKeys(): ReturnType<BundleSigner["list"]> {
    return this.deps.signer.list();
  }

  async list(): Promise<PolicyVersionView[]> {
    return (await this.deps.store.list()).map((b) => versionView(b, this.deps.engine.active()?.version ?? null));
  }

  async get(version: number): Promise<PolicyVersionView & { files: PolicySources }> {
    const stored = await this.deps.store.get(version);
    if (!stored) throw new NotFoundError("policy_version_not_found", `policy version ${version} does not exist`);
    return { ...versionView(stored, this.deps.engine.active()?.version ?? null), files: stored.sources };
  }

  /** What changed from `base` (by default the version's parent) to `version`: files added, removed, and unified diffs of the changed ones. */
  async diff(version: number, base?: number): Promise<PolicyDiff> {
    const to = await this.deps.store.get(version);
    if (!to) throw new NotFoundError("policy_version_not_found", `policy version ${version} does not exist`);
    const against = base ?? to.parent;
    if (against === null) throw new InputError("policy_no_parent", `policy version ${version} has no parent; say which version to compare it with (against)`, [{ path: "against", message: "required" }]);
    const from = await this.deps.store.get(against);
    if (!from) throw new NotFoundError("policy_version_not_found", `policy version ${against} does not exist`);
    return diffSources(from, to, against, version);
  }

  /** OPA-style status; `orgId` confines the decision counts to one organisation's. */
  async status(orgId: string | null = null): Promise<PolicyStatus> {
    const revisions = new Map((await this.deps.store.list()).map((b) => [b.version, b.revision]));
    return statusView({
      state: await this.deps.store.state(),
      active: this.deps.engine.active(),
      shadowEvaluating: this.deps.engine.shadow()?.version ?? null,
      revisions,
      decisions: await this.deps.decisionCounts(orgId ?? undefined),
      pool: this.deps.engine.pool,
    });
  }
}
