import path from "node:path";
import { ClaiimError, NotFoundError, UnprocessableError } from "../lib/errors";
import type { ChronStore, Recorder } from "../chron/chron-store";
import { newEvent } from "../chron/record";
import type { Logger } from "../lib/logger";
import { LiveWork } from "../lib/pacer";
import { Serial } from "../lib/serial";
import { contentDigest, fileSha256, parseManifest, revisionOf, writeBundle } from "./bundle";
import { BundleMirror } from "./bundle-mirror";
import type { BundleSigner } from "./bundle-signing";
import type { PolicyCompiler, PolicyWarning } from "./opa-compiler";
import { instantiate, type ActivePolicy, type BundleVerifier, type PolicyEngine } from "./policy-engine";
import type { BudgetGate } from "./budget";
import type { ReplayView } from "./replay";
import type { PolicyStore } from "./policy-store";
import { BUNDLE_NAME, readPolicyDir, versionView, type PolicyVersionView, type PublishRequest } from "./policy-views";
import { ShadowService } from "./shadow-service";
import { PolicyReads } from "./policy-reads";
import { SidecarBundles } from "./sidecar-bundles";
import { BOOTSTRAP, BOUNDS, mayChangePolicy, STARTUP } from "./changes";
import { type Actor, actorName, ALL_ORGANIZATIONS, type Scope } from "../shared/principal";

export { readPolicyDir } from "./policy-views";
export { mayChangePolicy } from "./changes";
export type { PolicyDiff, PolicyStatus, PolicyVersionView, PublishRequest, ShadowView } from "./policy-views";


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
  /** Publishing, activation, key rotation and shadow changes go one at a time. */
  readonly serial = new Serial();
  private readonly store: PolicyStore;
  private readonly compiler: PolicyCompiler;
  private readonly engine: PolicyEngine;
  private readonly signer: BundleSigner;
  private readonly mirror: BundleMirror;
  private readonly record: Recorder;
  private readonly logger: Logger;
  private readonly decisionCounts: (orgId?: string) => Promise<{ version: number | null; count: number }[]>;
  private readonly verify: BundleVerifier;
  private readonly budget: BudgetGate | null;
  /** Shadow mode, one at a time with publishing and activation. */
  readonly shadows: ShadowService;
  /** The active version as OPA sidecars fetch it. */
  readonly sidecar: SidecarBundles;
  /** Versions, files, diffs, status and signing keys, as the routes read them. */
  readonly reads: PolicyReads;

  constructor(deps: PolicyServiceDeps) {
    ({ store: this.store, compiler: this.compiler, engine: this.engine, signer: this.signer, record: this.record, logger: this.logger } = deps);
    this.mirror = new BundleMirror(deps.bundleDir, deps.store, deps.record, deps.logger);
    this.decisionCounts = deps.decisionCounts ?? (async () => []);
    this.verify = (files) => this.signer.verify(files);
    this.budget = deps.budget ?? null;
    this.sidecar = new SidecarBundles(deps.engine, deps.store, deps.compiler, deps.signer);
    this.shadows = new ShadowService({
      store: deps.store,
      engine: deps.engine,
      record: deps.record,
      logger: deps.logger,
      chron: deps.chron,
      live: deps.live ?? new LiveWork(),
      load: (version) => this.load(version),
      serial: this.serial,
      tripsToStop: deps.tripsToStop ?? 3,
    });
    this.reads = new PolicyReads({ store: deps.store, engine: deps.engine, signer: deps.signer, decisionCounts: this.decisionCounts, shadowTrips: () => this.shadows.trips });
  }

  /** Compiles, stores and (when asked) activates a new version. A refusal is recorded in Chron too. */
  publish(req: PublishRequest, actor: Actor, scope: Scope = ALL_ORGANIZATIONS): Promise<PolicyVersionView & { warnings: PolicyWarning[] }> {
    mayChangePolicy(scope);
    return this.serial.run(async () => {
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
      await this.mirror.write(version, bundle);
      this.logger.info("policy published", { version, revision, actor });
      if (req.activate) await this.activateLoaded(loaded, actor);
      else loaded.release();
      return { ...versionView(stored, this.engine.active()?.version ?? null), warnings };
    });
  }

  activate(version: number, actor: Actor, scope: Scope = ALL_ORGANIZATIONS): Promise<PolicyVersionView> {
    mayChangePolicy(scope);
    return this.serial.run(async () => {
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
      await this.mirror.check(stored, actor).catch((err: Error) => this.logger.warn("could not check the bundle file", { version, error: err.message }));
      return versionView(stored, this.engine.active()?.version ?? null);
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
      await this.shadows.resume();
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

  /** A published version, verified and loaded, for evaluation beside the decision path (shadow, replay). */
  async load(version: number): Promise<ActivePolicy> {
    const stored = await this.store.get(version);
    if (!stored) throw new NotFoundError("policy_version_not_found", `policy version ${version} does not exist`);
    return instantiate(stored, new Date(), this.verify, this.engine.pool).catch((err: Error) => {
      throw new UnprocessableError("policy_load_failed", err.message);
    });
  }

  /** Bundle-signing keys: a new one signs from now on, and every earlier one keeps verifying. Serialised with publishing. */
  rotateSigningKey(actor: Actor, reason: string | null, scope: Scope = ALL_ORGANIZATIONS): Promise<{ kid: string; previous: string | null }> {
    mayChangePolicy(scope);
    return this.serial.run(async () => {
      const rotated = await this.signer.rotate(actor, reason);
      this.logger.info("bundle-signing key rotated", { kid: rotated.kid, previous: rotated.previous, actor });
      return rotated;
    });
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
}
