// Making a published version the one that decides: loaded and verified first, held to the budget,
// recorded in Chron with the database change, and only then swapped in.
import { ClaiimError, NotFoundError, UnprocessableError } from "../lib/errors";
import type { Recorder } from "../chron/chron-store";
import { newEvent } from "../chron/record";
import type { Logger } from "../lib/logger";
import type { BundleMirror } from "./bundle-mirror";
import type { PolicyCompiler } from "./compiler";
import { instantiate, type ActivePolicy, type BundleVerifier, type PolicyEngine } from "./policy-engine";
import type { BudgetGate } from "./budget";
import type { PolicyStore } from "./policy-store";
import { versionView, type PolicyVersionView } from "./policy-views";
import { STARTUP } from "./changes";
import { type Actor, actorName } from "../shared/principal";

/** What publishing and activation work on (PolicyService builds it once). */
export interface PolicyParts {
  store: PolicyStore;
  compiler: PolicyCompiler;
  engine: PolicyEngine;
  mirror: BundleMirror;
  record: Recorder;
  logger: Logger;
  /** Checks a bundle's signature (BundleSigner.verify). */
  verify: BundleVerifier;
  budget: BudgetGate | null;
}

/** Activation of published versions. Its callers serialise it with every other policy change (PolicyService). */
export class PolicyActivation {
  constructor(private readonly p: PolicyParts) {}

  /** Activates a stored version; one that does not load, or exceeds the budget, is refused and recorded, and the active one stays. */
  async activate(version: number, actor: Actor): Promise<PolicyVersionView> {
    const { store, engine, record, logger, budget, compiler } = this.p;
    const stored = await store.get(version);
    if (!stored) throw new NotFoundError("policy_version_not_found", `policy version ${version} does not exist`);
    const at = new Date();
    let loaded;
    try {
      loaded = await instantiate(stored, at, this.p.verify, engine.pool);
    } catch (err) {
      const message = (err as Error).message;
      await record(
        [
          newEvent({
            type: "policy.activation_failed",
            actor,
            subject: { type: "policy", id: String(version), name: stored.revision },
            reason: message,
            before: { active_version: engine.active()?.version ?? null },
            after: { active_version: engine.active()?.version ?? null },
          }),
        ],
        (tx) => store.setError(message, at, tx),
      );
      logger.error("policy activation refused", { version, error: (err as Error).message });
      throw new UnprocessableError("policy_activation_failed", (err as Error).message);
    }
    // The budget, on the version's own tests and on the latest decisions (not at start-up: the
    // stored active version passed it when it was activated, and a slow one is bounded anyway).
    if (actor !== STARTUP) {
      try {
        const tests = budget ? await compiler.buildTests(stored.sources) : null;
        if (tests) await budget?.tests(tests);
        await budget?.recent(loaded);
      } catch (err) {
        loaded.release();
        if (err instanceof ClaiimError) {
          await record([
            newEvent({
              type: "policy.activation_refused",
              actor,
              subject: { type: "policy", id: String(version), name: stored.revision },
              reason: err.message,
              before: { active_version: engine.active()?.version ?? null },
              after: { code: err.code, active_version: engine.active()?.version ?? null },
            }),
          ]);
        }
        throw err;
      }
    }
    await this.activateLoaded(loaded, actor);
    await this.p.mirror.check(stored, actor).catch((err: Error) => logger.warn("could not check the bundle file", { version, error: err.message }));
    return versionView(stored, engine.active()?.version ?? null);
  }

  /** Makes a loaded version the active one: recorded with the database change, then swapped in. */
  async activateLoaded(loaded: ActivePolicy, actor: Actor): Promise<void> {
    const { store, engine } = this.p;
    const previous = engine.active()?.version ?? null;
    // A shadow that becomes the active version has nothing left to be compared with.
    const endsShadow = (await store.state()).shadow?.version === loaded.version;
    // WARNING: persist first, swap second: if the database refuses, the old version stays active everywhere.
    await this.p.record(
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
        await store.setActive(loaded.version, actorName(actor), loaded.activatedAt, tx);
        if (endsShadow) await store.setShadow(null, tx);
      },
    );
    engine.swap(loaded);
    if (endsShadow) engine.setShadow(null);
    this.p.logger.info("policy activated", { version: loaded.version, revision: loaded.revision, actor });
  }
}
