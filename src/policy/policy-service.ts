import fs from "node:fs/promises";
import path from "node:path";
import { createTwoFilesPatch } from "diff";
import { ClaiimError, ConflictError, InputError, NotAllowedError, NotFoundError, UnprocessableError } from "../lib/errors";
import type { ChronStore, Recorder } from "../chron/chron-store";
import { newEvent } from "../chron/record";
import type { Logger } from "../lib/logger";
import { checkWindow } from "../shared/windows";
import { LiveWork } from "../lib/pacer";
import { contentDigest, fileSha256, parseManifest, readBundle, revisionOf, writeBundle } from "./bundle";
import type { BundleSigner } from "./bundle-signing";
import type { PolicyCompiler, PolicySources, PolicyWarning } from "./opa-compiler";
import { instantiate, PooledPolicy, type ActivePolicy, type BundleVerifier, type PolicyEngine } from "./policy-engine";
import type { BudgetGate } from "./budget";
import type { PoolStats, TripEvent } from "./evaluation/pool";
import type { ReplayView } from "./replay";
import { shadowReport, type ShadowReport } from "./shadow-report";
import type { BundleSummary, PolicyStore, StoredBundle } from "./policy-store";
import { type Actor, actorName, ALL_ORGANIZATIONS, type Scope } from "../shared/principal";

export interface PublishRequest {
  files: PolicySources;
  message: string;
  activate: boolean;
}

export interface PolicyVersionView {
  version: number;
  parent: number | null;
  revision: string;
  digest: string;
  file_sha256: string;
  message: string;
  created_by: string;
  created_at: string;
  active: boolean;
}

export interface PolicyDiff {
  from: number;
  to: number;
  added: string[];
  removed: string[];
  changed: { file: string; diff: string }[];
  unchanged: number;
}

export interface PolicyStatus {
  name: string;
  active_version: number | null;
  active_revision: string | null;
  active_digest: string | null;
  /** kid of the bundle-signing key whose signature on the active bundle was verified at activation. */
  active_signed_by: string | null;
  last_successful_activation: string | null;
  activated_by: string | null;
  /** Shadow mode; `evaluating` is false when the shadow failed verification at start-up. */
  shadow: (Omit<ShadowView, "revision"> & { revision: string | null; evaluating: boolean; bounds_exceeded: number }) | null;
  errors: { message: string; at: string }[];
  /** The bounds of every evaluation, and how often they were reached since this process started. */
  evaluation: { timeout_ms: number; max_memory_mb: number } & PoolStats;
  /** Decisions made under each revision, from Chron. */
  decisions: { version: number | null; revision: string | null; count: number }[];
}

export interface ShadowView {
  version: number;
  revision: string;
  since: string;
  set_by: string;
}

const BUNDLE_NAME = "claiim";

/** The policy applies to every organisation, so only a credential that spans all of them may change it. */
function mayChangePolicy(scope: Scope): void {
  if (scope.orgId !== null) throw new NotAllowedError("organization_scope", "the policy applies to every organisation; only a key not confined to one may change it");
}
const BOOTSTRAP: Actor = { type: "system", id: "bootstrap", name: "reference policies on first start" };
const STARTUP: Actor = { type: "system", id: "startup", name: "activation of the stored active version at start-up" };
const BOUNDS: Actor = { type: "system", id: "evaluation-bounds", name: "the evaluation deadline and memory limit" };

export async function readPolicyDir(dir: string): Promise<PolicySources> {
  const sources: PolicySources = {};
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const name = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(name);
      else if (entry.isFile() && /\.(rego|json|ya?ml)$/.test(entry.name)) sources[name] = await fs.readFile(path.join(dir, name), "utf8");
    }
  };
  await walk("");
  return sources;
}

export interface PolicyServiceDeps {
  store: PolicyStore;
  compiler: PolicyCompiler;
  engine: PolicyEngine;
  signer: BundleSigner;
  /** Where a copy of each bundle is written for OPA tooling. */
  bundleDir: string;
  record: Recorder;
  logger: Logger;
  /** Decisions made under each policy version, from Chron. */
  decisionCounts?: (orgId?: string) => Promise<{ version: number | null; count: number }[]>;
  /** Chron, read for the shadow report. */
  chron: Pick<ChronStore, "list" | "bounds">;
  /** Live decisions, which the shadow report gives way to. */
  live?: LiveWork;
  /** The budget gate at publish and activation; none in tests that do not exercise it. */
  budget?: BudgetGate;
  /** A shadow is stopped after this many of its evaluations exceeded the evaluation bounds. */
  tripsToStop?: number;
}

/**
 * Publishing and activation. Both are serialised in this process, and both are all-or-nothing:
 * a version that does not compile is not stored, and a version that does not load does not
 * replace the active one.
 */
export class PolicyService {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly served = new Map<number, Promise<Buffer>>();
  private readonly store: PolicyStore;
  private readonly compiler: PolicyCompiler;
  private readonly engine: PolicyEngine;
  private readonly signer: BundleSigner;
  private readonly bundleDir: string;
  private readonly record: Recorder;
  private readonly logger: Logger;
  private readonly decisionCounts: (orgId?: string) => Promise<{ version: number | null; count: number }[]>;
  private readonly verify: BundleVerifier;
  private readonly chron: Pick<ChronStore, "list" | "bounds">;
  private readonly live: LiveWork;
  private readonly budget: BudgetGate | null;
  private readonly tripsToStop: number;
  /** Evaluations of the current shadow that exceeded the bounds. */
  private shadowTrips = 0;

  constructor(deps: PolicyServiceDeps) {
    this.live = deps.live ?? new LiveWork();
    ({ store: this.store, compiler: this.compiler, engine: this.engine, signer: this.signer, bundleDir: this.bundleDir, record: this.record, logger: this.logger, chron: this.chron } = deps);
    this.decisionCounts = deps.decisionCounts ?? (async () => []);
    this.verify = (files) => this.signer.verify(files);
    this.budget = deps.budget ?? null;
    this.tripsToStop = deps.tripsToStop ?? 3;
    this.engine.pool.onTrip((e) => this.tripped(e));
  }

  /** Compiles, stores and (when asked) activates a new version. A refusal is recorded in Chron too. */
  publish(req: PublishRequest, actor: Actor, scope: Scope = ALL_ORGANIZATIONS): Promise<PolicyVersionView & { warnings: PolicyWarning[] }> {
    mayChangePolicy(scope);
    return this.serialised(async () => {
      const refused = async (err: unknown): Promise<never> => {
        if (err instanceof ClaiimError) {
          await this.record([
            newEvent({
              type: "policy.publish_refused",
              actor,
              subject: { type: "policy", id: BUNDLE_NAME, name: BUNDLE_NAME },
              reason: err.message,
              before: null,
              after: { code: err.code, message: req.message, files: Object.keys(req.files).sort() },
            }),
          ]);
        }
        throw err;
      };
      let files;
      let warnings: PolicyWarning[];
      try {
        const budget = this.budget;
        ({ files, warnings } = await this.compiler.compile(
          req.files,
          budget
            ? async (_built, tests) => {
                if (tests) await budget.tests(tests);
              }
            : undefined,
        ));
      } catch (err) {
        return refused(err);
      }
      const version = (await this.store.latestVersion()) + 1;
      const digest = contentDigest(files);
      const revision = revisionOf(version, digest);
      files.set(".manifest", Buffer.from(JSON.stringify({ ...parseManifest(files), revision })));
      const bundle = await writeBundle(await this.signer.sign(files));
      const createdAt = new Date();
      const createdBy = actorName(actor);
      const parent = this.engine.active()?.version ?? null;
      const stored = { version, parent, revision, digest, fileSha256: fileSha256(bundle), bundle, sources: req.files, message: req.message, createdBy, createdAt };
      // Load before storing: a bundle that compiles but cannot run is refused like one that does not compile.
      const loaded = await instantiate(stored, createdAt, this.verify, this.engine.pool).catch((err: Error) => {
        throw new UnprocessableError("policy_load_failed", err.message);
      });
      try {
        await this.budget?.recent(loaded);
      } catch (err) {
        loaded.release();
        return refused(err);
      }
      await this.record(
        [
          newEvent({
            type: "policy.published",
            actor,
            subject: { type: "policy", id: String(version), name: revision },
            reason: req.message,
            before: null,
            after: { version, revision, digest, file_sha256: stored.fileSha256, files: Object.keys(req.files).sort(), warnings: warnings.map((w) => `${w.file}: ${w.code}`) },
          }),
        ],
        (tx) => this.store.insert(stored, tx),
      );
      await this.writeFile(version, bundle);
      this.logger.info("policy published", { version, revision, actor });
      if (req.activate) await this.activateLoaded(loaded, actor);
      else loaded.release();
      return { ...this.view(stored), warnings };
    });
  }

  activate(version: number, actor: Actor, scope: Scope = ALL_ORGANIZATIONS): Promise<PolicyVersionView> {
    mayChangePolicy(scope);
    return this.serialised(async () => {
      const stored = await this.store.get(version);
      if (!stored) throw new NotFoundError("policy_version_not_found", `policy version ${version} does not exist`);
      const at = new Date();
      let loaded;
      try {
        loaded = await instantiate(stored, at, this.verify, this.engine.pool);
      } catch (err) {
        const message = (err as Error).message;
        await this.record(
          [
            newEvent({
              type: "policy.activation_failed",
              actor,
              subject: { type: "policy", id: String(version), name: stored.revision },
              reason: message,
              before: { active_version: this.engine.active()?.version ?? null },
              after: { active_version: this.engine.active()?.version ?? null },
            }),
          ],
          (tx) => this.store.setError(message, at, tx),
        );
        this.logger.error("policy activation refused", { version, error: (err as Error).message });
        throw new UnprocessableError("policy_activation_failed", (err as Error).message);
      }
      // The budget, on the version's own tests and on the latest decisions (not at start-up: the
      // stored active version passed it when it was activated, and a slow one is bounded anyway).
      if (actor !== STARTUP) {
        try {
          const tests = this.budget ? await this.compiler.buildTests(stored.sources) : null;
          if (tests) await this.budget?.tests(tests);
          await this.budget?.recent(loaded);
        } catch (err) {
          loaded.release();
          if (err instanceof ClaiimError) {
            await this.record([
              newEvent({
                type: "policy.activation_refused",
                actor,
                subject: { type: "policy", id: String(version), name: stored.revision },
                reason: err.message,
                before: { active_version: this.engine.active()?.version ?? null },
                after: { code: err.code, active_version: this.engine.active()?.version ?? null },
              }),
            ]);
          }
          throw err;
        }
      }
      await this.activateLoaded(loaded, actor);
      await this.checkFile(stored, actor).catch((err: Error) => this.logger.warn("could not check the bundle file", { version, error: err.message }));
      return this.view(stored);
    });
  }

  /**
   * At start-up: activate the version the database names, or, on a database with no policy at
   * all, publish and activate the reference policies from `regoDir`. A stored version that fails
   * verification stays inactive, and CLAIIM reports not ready rather than run unverified policy.
   */
  async start(regoDir: string): Promise<void> {
    const state = await this.store.state();
    if (state.activeVersion !== null) {
      try {
        await this.activate(state.activeVersion, STARTUP);
      } catch (err) {
        this.logger.error("active policy could not be loaded at start-up", { version: state.activeVersion, error: (err as Error).message });
      }
      if (state.shadow) await this.resumeShadow(state.shadow.version);
      return;
    }
    if ((await this.store.latestVersion()) === 0) {
      const view = await this.publish(
        { files: await readPolicyDir(regoDir), message: `reference policies from ${path.basename(regoDir)}/`, activate: true },
        BOOTSTRAP,
      );
      this.logger.info("reference policies published and activated", { version: view.version, revision: view.revision });
    }
  }

  /**
   * The active version as a standard OPA bundle for sidecars (OPA's bundle service API): built once
   * per version from the stored sources with `opa build -t rego`, carrying the same revision, and
   * signed like the stored bundle, so a sidecar with `signing` configured refuses anything else.
   */
  async servedBundle(): Promise<{ revision: string; bytes: Buffer } | null> {
    const active = this.engine.active();
    if (!active) return null;
    let bytes = this.served.get(active.version);
    if (!bytes) {
      const stored = await this.store.get(active.version);
      if (!stored) return null;
      bytes = this.compiler.regoBundle(stored.sources, stored.revision).then(async (archive) => writeBundle(await this.signer.sign(await readBundle(archive))));
      bytes.catch(() => this.served.delete(active.version));
      this.served.set(active.version, bytes);
    }
    return { revision: active.revision, bytes: await bytes };
  }

  /**
   * Shadow mode: `version` is evaluated beside the active one on every decision, never enforced;
   * Chron records its result next to the real one. Verified like an activation before it runs.
   */
  setShadow(version: number, actor: Actor, scope: Scope = ALL_ORGANIZATIONS): Promise<ShadowView> {
    mayChangePolicy(scope);
    return this.serialised(async () => {
      if (this.engine.active()?.version === version) throw new ConflictError("shadow_is_active", `policy version ${version} is the active version; a shadow must differ from it`);
      const loaded = await this.load(version);
      const since = loaded.activatedAt;
      const previous = this.engine.shadow()?.version ?? null;
      const by = actorName(actor);
      await this.record(
        [
          newEvent({
            type: "policy.shadow_started",
            actor,
            subject: { type: "policy", id: String(version), name: loaded.revision },
            before: { shadow_version: previous },
            after: { shadow_version: version, active_version: this.engine.active()?.version ?? null },
          }),
        ],
        (tx) => this.store.setShadow({ version, since, by }, tx),
      );
      this.engine.setShadow(loaded);
      this.shadowTrips = 0;
      this.logger.info("policy shadow started", { version, actor });
      return { version, revision: loaded.revision, since: since.toISOString(), set_by: by };
    });
  }

  /** A published version, verified and loaded, for evaluation beside the decision path (shadow, replay). */
  async load(version: number): Promise<ActivePolicy> {
    const stored = await this.store.get(version);
    if (!stored) throw new NotFoundError("policy_version_not_found", `policy version ${version} does not exist`);
    return instantiate(stored, new Date(), this.verify, this.engine.pool).catch((err: Error) => {
      throw new UnprocessableError("policy_load_failed", err.message);
    });
  }

  stopShadow(actor: Actor, scope: Scope = ALL_ORGANIZATIONS): Promise<void> {
    mayChangePolicy(scope);
    return this.serialised(async () => {
      const state = await this.store.state();
      if (!state.shadow) throw new NotFoundError("no_shadow", "no policy version is being shadowed");
      await this.record(
        [
          newEvent({
            type: "policy.shadow_stopped",
            actor,
            subject: { type: "policy", id: String(state.shadow.version), name: this.engine.shadow()?.revision ?? String(state.shadow.version) },
            before: { shadow_version: state.shadow.version, since: state.shadow.since.toISOString() },
            after: { shadow_version: null },
          }),
        ],
        (tx) => this.store.setShadow(null, tx),
      );
      this.engine.setShadow(null);
      this.logger.info("policy shadow stopped", { version: state.shadow.version, actor });
    });
  }

  /**
   * Where a shadow version disagreed with the decisions made: by default the current shadow since it
   * started; for an earlier shadow, name its version and the time window.
   */
  async shadowReport(q: { version?: number; fromMs?: number; toMs?: number; orgId: string | null; samples: number }): Promise<ShadowReport> {
    const current = (await this.store.state()).shadow;
    const version = q.version ?? current?.version;
    if (version === undefined) throw new NotFoundError("no_shadow", "no policy version is being shadowed; name the version of an earlier shadow, and from when");
    const fromMs = q.fromMs ?? (current?.version === version ? current.since.getTime() : undefined);
    if (fromMs === undefined) throw new InputError("shadow_window_required", `policy version ${version} is not the current shadow; say from when to report (from)`, [{ path: "from", message: "required" }]);
    checkWindow(fromMs, q.toMs, "from", "to");
    return shadowReport(this.chron, { version, fromMs, toMs: q.toMs, orgId: q.orgId ?? undefined, samplesPerGroup: q.samples }, this.live);
  }

  /** Bundle-signing keys: a new one signs from now on, and every earlier one keeps verifying. Serialised with publishing. */
  rotateSigningKey(actor: Actor, reason: string | null, scope: Scope = ALL_ORGANIZATIONS): Promise<{ kid: string; previous: string | null }> {
    mayChangePolicy(scope);
    return this.serialised(async () => {
      const rotated = await this.signer.rotate(actor, reason);
      this.logger.info("bundle-signing key rotated", { kid: rotated.kid, previous: rotated.previous, actor });
      return rotated;
    });
  }

  signingKeys(): ReturnType<BundleSigner["list"]> {
    return this.signer.list();
  }

  async list(): Promise<PolicyVersionView[]> {
    return (await this.store.list()).map((b) => this.view(b));
  }

  async get(version: number): Promise<PolicyVersionView & { files: PolicySources }> {
    const stored = await this.store.get(version);
    if (!stored) throw new NotFoundError("policy_version_not_found", `policy version ${version} does not exist`);
    return { ...this.view(stored), files: stored.sources };
  }

  /** What changed from `base` (by default the version's parent) to `version`: files added, removed, and unified diffs of the changed ones. */
  async diff(version: number, base?: number): Promise<PolicyDiff> {
    const to = await this.store.get(version);
    if (!to) throw new NotFoundError("policy_version_not_found", `policy version ${version} does not exist`);
    const against = base ?? to.parent;
    if (against === null) throw new InputError("policy_no_parent", `policy version ${version} has no parent; say which version to compare it with (against)`, [{ path: "against", message: "required" }]);
    const from = await this.store.get(against);
    if (!from) throw new NotFoundError("policy_version_not_found", `policy version ${against} does not exist`);
    const names = [...new Set([...Object.keys(from.sources), ...Object.keys(to.sources)])].sort();
    const result: PolicyDiff = { from: against, to: version, added: [], removed: [], changed: [], unchanged: 0 };
    for (const name of names) {
      const a = from.sources[name];
      const b = to.sources[name];
      if (a === undefined) result.added.push(name);
      else if (b === undefined) result.removed.push(name);
      else if (a === b) result.unchanged += 1;
      else result.changed.push({ file: name, diff: createTwoFilesPatch(`${against}/${name}`, `${version}/${name}`, a, b) });
    }
    return result;
  }

  /** OPA-style status; `orgId` confines the decision counts to one organisation's. */
  async status(orgId: string | null = null): Promise<PolicyStatus> {
    const state = await this.store.state();
    const active = this.engine.active();
    const revisions = new Map((await this.store.list()).map((b) => [b.version, b.revision]));
    const decisions = (await this.decisionCounts(orgId ?? undefined)).map((d) => ({ version: d.version, revision: d.version === null ? null : (revisions.get(d.version) ?? null), count: d.count }));
    return {
      name: BUNDLE_NAME,
      active_version: active?.version ?? null,
      active_revision: active?.revision ?? null,
      active_digest: active?.digest ?? null,
      active_signed_by: active?.signedBy ?? null,
      last_successful_activation: active?.activatedAt.toISOString() ?? null,
      activated_by: active ? state.activatedBy : null,
      shadow: state.shadow
        ? {
            version: state.shadow.version,
            revision: revisions.get(state.shadow.version) ?? null,
            since: state.shadow.since.toISOString(),
            set_by: state.shadow.by,
            evaluating: this.engine.shadow()?.version === state.shadow.version,
            bounds_exceeded: this.shadowTrips,
          }
        : null,
      errors: state.lastError && state.lastErrorAt ? [{ message: state.lastError, at: state.lastErrorAt.toISOString() }] : [],
      decisions,
      evaluation: { timeout_ms: this.engine.pool.limits.timeoutMs, max_memory_mb: Math.round(this.engine.pool.limits.maxMemoryBytes / 1048576), ...this.engine.pool.stats() },
    };
  }

  /**
   * An evaluation exceeded the deadline or the memory limit. The active version's decision is then a
   * recorded deny (decision-service.ts); a shadow that keeps doing so is stopped, recorded in Chron
   * and reported in the status, so that it does not keep ending evaluation workers.
   */
  private tripped(e: TripEvent): void {
    const shadow = this.engine.shadow();
    if (!(shadow instanceof PooledPolicy) || shadow.handle.id !== e.handle) return;
    this.shadowTrips += 1;
    if (this.shadowTrips !== this.tripsToStop) return;
    const message = `shadow policy version ${shadow.version} stopped: ${this.shadowTrips} of its evaluations exceeded the evaluation ${e.kind === "timeout" ? "deadline" : "memory limit"} (last: ${Math.round(e.ms)} ms)`;
    void this.serialised(async () => {
      if (this.engine.shadow() !== shadow) return;
      const at = new Date();
      await this.record(
        [
          newEvent({
            type: "policy.shadow_stopped",
            actor: BOUNDS,
            subject: { type: "policy", id: String(shadow.version), name: shadow.revision },
            reason: message,
            before: { shadow_version: shadow.version },
            after: { shadow_version: null, bounds_exceeded: this.shadowTrips },
          }),
        ],
        async (tx) => {
          await this.store.setShadow(null, tx);
          await this.store.setError(message, at, tx);
        },
      );
      this.engine.setShadow(null);
      this.logger.error("shadow policy stopped: it keeps exceeding the evaluation bounds", { version: shadow.version, trips: this.shadowTrips });
    }).catch((err: Error) => this.logger.error("could not stop the shadow policy", { error: err.message }));
  }

  /** A replay stopped for exceeding the evaluation bounds: recorded in Chron and reported in the status. */
  async replayStopped(job: ReplayView, message: string): Promise<void> {
    await this.record(
      [
        newEvent({
          type: "policy.replay_stopped",
          actor: BOUNDS,
          subject: { type: "replay", id: job.id, name: job.revision },
          reason: message,
          before: { version: job.version, processed: job.progress.processed },
          after: { bounds_exceeded: job.bounds_exceeded },
        }),
      ],
      (tx) => this.store.setError(message, new Date(), tx),
    );
    this.logger.error("replay stopped: its version keeps exceeding the evaluation bounds", { id: job.id, version: job.version });
  }

  /** A shadow that no longer verifies is not evaluated; decisions are unaffected either way. */
  private async resumeShadow(version: number): Promise<void> {
    try {
      this.engine.setShadow(await this.load(version));
      this.shadowTrips = 0;
    } catch (err) {
      const message = `shadow not evaluated: ${(err as Error).message}`;
      await this.record(
        [newEvent({ type: "policy.shadow_failed", actor: STARTUP, subject: { type: "policy", id: String(version), name: String(version) }, reason: message, before: null, after: null })],
        (tx) => this.store.setError(message, new Date(), tx),
      );
      this.logger.error("shadow policy could not be loaded at start-up", { version, error: (err as Error).message });
    }
  }

  private async activateLoaded(loaded: ActivePolicy, actor: Actor): Promise<void> {
    const previous = this.engine.active()?.version ?? null;
    // A shadow that becomes the active version has nothing left to be compared with.
    const endsShadow = (await this.store.state()).shadow?.version === loaded.version;
    // WARNING: persist first, swap second: if the database refuses, the old version stays active everywhere.
    await this.record(
      [
        newEvent({
          type: "policy.activated",
          actor,
          subject: { type: "policy", id: String(loaded.version), name: loaded.revision },
          before: { active_version: previous, ...(endsShadow ? { shadow_version: loaded.version } : {}) },
          after: { active_version: loaded.version, revision: loaded.revision, digest: loaded.digest, ...(endsShadow ? { shadow_version: null } : {}) },
        }),
      ],
      async (tx) => {
        await this.store.setActive(loaded.version, actorName(actor), loaded.activatedAt, tx);
        if (endsShadow) await this.store.setShadow(null, tx);
      },
    );
    this.engine.swap(loaded);
    if (endsShadow) this.engine.setShadow(null);
    this.logger.info("policy activated", { version: loaded.version, revision: loaded.revision, actor });
  }

  /**
   * The copy under bundles/ is for OPA tooling; CLAIIM runs the verified copy from the database.
   * A copy that differs from it is moved aside (kept for inspection), replaced, and reported.
   */
  private async checkFile(stored: StoredBundle, actor: Actor): Promise<void> {
    const file = path.join(this.bundleDir, `${stored.version}.tar.gz`);
    const onDisk = await fs.readFile(file).catch(() => null);
    if (onDisk?.equals(stored.bundle)) return;
    if (onDisk) {
      const kept = `${file}.rejected-${new Date().toISOString().replace(/[:.]/g, "-")}`;
      await fs.rename(file, kept);
      const message = `bundle file ${path.basename(file)} differed from the verified copy of version ${stored.version}; kept as ${path.basename(kept)} and replaced`;
      await this.record(
        [newEvent({ type: "policy.bundle_file_replaced", actor, subject: { type: "policy", id: String(stored.version), name: stored.revision }, reason: message, before: { file_sha256: fileSha256(onDisk) }, after: { file_sha256: stored.fileSha256 } })],
        (tx) => this.store.setError(message, new Date(), tx),
      );
      this.logger.error("tampered bundle file replaced", { version: stored.version, kept });
    }
    await this.writeFile(stored.version, stored.bundle);
  }

  private async writeFile(version: number, bundle: Buffer): Promise<void> {
    try {
      await fs.mkdir(this.bundleDir, { recursive: true });
      await fs.writeFile(path.join(this.bundleDir, `${version}.tar.gz`), bundle);
    } catch (err) {
      // The database holds the authoritative copy; the file is a convenience for OPA tooling.
      this.logger.warn("could not write bundle file", { version, error: (err as Error).message });
    }
  }

  private view(b: BundleSummary): PolicyVersionView {
    return {
      version: b.version,
      parent: b.parent,
      revision: b.revision,
      digest: b.digest,
      file_sha256: b.fileSha256,
      message: b.message,
      created_by: b.createdBy,
      created_at: b.createdAt.toISOString(),
      active: this.engine.active()?.version === b.version,
    };
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

