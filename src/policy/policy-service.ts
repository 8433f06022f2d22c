import path from "node:path";
import { NotFoundError, UnprocessableError } from "../lib/errors";
import type { ChronStore, Recorder } from "../chron/chron-store";
import { newEvent } from "../chron/record";
import type { Logger } from "../lib/logger";
import { LiveWork } from "../lib/pacer";
import { Serial } from "../lib/serial";
import { BundleMirror } from "./bundle-mirror";
import type { BundleSigner } from "./bundle-signing";
import type { PolicyCompiler, PolicyWarning } from "./compiler";
import { instantiate, type ActivePolicy, type BundleVerifier, type PolicyEngine } from "./policy-engine";
import type { BudgetGate } from "./budget";
import type { ReplayView } from "./replay";
import type { PolicyStore } from "./policy-store";
import { readPolicyDir, type PolicyVersionView, type PublishRequest } from "./policy-views";
import { PolicyActivation, type PolicyParts } from "./policy-activation";
import { PolicyPublishing } from "./policy-publishing";
import { ShadowService } from "./shadow-service";
import { PolicyReads } from "./policy-reads";
import { SidecarBundles } from "./sidecar-bundles";
import { BOOTSTRAP, BOUNDS, mayChangePolicy, STARTUP } from "./changes";
import { type Actor, ALL_ORGANIZATIONS, type Scope } from "../shared/principal";

/** The policy events after which the active and shadow versions are read again (followChange). */
const FOLLOWED = new Set(["policy.activated", "policy.shadow_started", "policy.shadow_stopped"]);

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
 * Policy changes: publishing (policy-publishing.ts), activation (policy-activation.ts), shadows,
 * key rotation, and following other processes' changes. All are serialised in this process, and
 * publishing and activation are all-or-nothing: a version that does not compile is not stored,
 * and a version that does not load does not replace the active one.
 */
export class PolicyService {
  /** Publishing, activation, key rotation and shadow changes go one at a time. */
  readonly serial = new Serial();
  private readonly store: PolicyStore;
  private readonly engine: PolicyEngine;
  private readonly signer: BundleSigner;
  private readonly record: Recorder;
  private readonly logger: Logger;
  private readonly decisionCounts: (orgId?: string) => Promise<{ version: number | null; count: number }[]>;
  private readonly verify: BundleVerifier;
  private readonly activation: PolicyActivation;
  private readonly publishing: PolicyPublishing;
  /** Shadow mode, one at a time with publishing and activation. */
  readonly shadows: ShadowService;
  /** The active version as OPA sidecars fetch it. */
  readonly sidecar: SidecarBundles;
  /** Versions, files, diffs, status and signing keys, as the routes read them. */
  readonly reads: PolicyReads;

  constructor(deps: PolicyServiceDeps) {
    ({ store: this.store, engine: this.engine, signer: this.signer, record: this.record, logger: this.logger } = deps);
    this.decisionCounts = deps.decisionCounts ?? (async () => []);
    this.verify = (files) => this.signer.verify(files);
    const parts: PolicyParts = {
      store: deps.store,
      compiler: deps.compiler,
      engine: deps.engine,
      mirror: new BundleMirror(deps.bundleDir, deps.store, deps.record, deps.logger),
      record: deps.record,
      logger: deps.logger,
      verify: this.verify,
      budget: deps.budget ?? null,
    };
    this.activation = new PolicyActivation(parts);
    this.publishing = new PolicyPublishing(parts, deps.signer, this.activation);
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
    this.reads = new PolicyReads({ store: deps.store, engine: deps.engine, signer: deps.signer, decisionCounts: this.decisionCounts });
  }

  /** Compiles, stores and (when asked) activates a new version. A refusal is recorded in Chron too. */
  publish(req: PublishRequest, actor: Actor, scope: Scope = ALL_ORGANIZATIONS): Promise<PolicyVersionView & { warnings: PolicyWarning[] }> {
    mayChangePolicy(scope);
    return this.serial.run(() => this.publishing.publish(req, actor));
  }

  /** Makes a published version the active one, or refuses (and records why) and keeps the active one. */
  activate(version: number, actor: Actor, scope: Scope = ALL_ORGANIZATIONS): Promise<PolicyVersionView> {
    mayChangePolicy(scope);
    return this.serial.run(() => this.activation.activate(version, actor));
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

  /**
   * Another process changed what is active, shadowed or signs bundles (its Chron event names the
   * change; see ChronFollower): this process takes the same state from the database, one at a
   * time with its own changes. It records nothing: the change was recorded where it was made.
   * WARNING: a version that does not load here throws, and the follower tries again; meanwhile this
   * process answers 503 rather than decide under the version it held before.
   */
  followChange(event: { type: string; subject: { type: string; name: string } }): Promise<void> {
    if (event.type.startsWith("signing_key.")) {
      return event.subject.name === this.signer.purpose ? this.serial.run(() => this.signer.reload()) : Promise.resolve();
    }
    if (!FOLLOWED.has(event.type)) return Promise.resolve();
    return this.serial.run(async () => {
      const state = await this.store.state();
      if (state.activeVersion !== null && state.activeVersion !== this.engine.active()?.version) {
        const stored = await this.store.get(state.activeVersion);
        if (!stored) throw new Error(`the active policy version ${state.activeVersion} is not stored`);
        this.engine.swap(await instantiate(stored, state.activatedAt ?? new Date(), this.verify, this.engine.pool));
        this.logger.info("policy activated by another process", { version: state.activeVersion });
      }
      const shadow = state.shadow?.version ?? null;
      if (shadow !== (this.engine.shadow()?.version ?? null)) {
        // A shadow never decides: one that does not load here is logged, not retried.
        const loaded = shadow === null ? null : await this.load(shadow).catch((err: Error) => (this.logger.error("shadow policy of another process could not be loaded", { version: shadow, error: err.message }), null));
        this.engine.setShadow(loaded);
      }
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
}
