// Policy's part of the object graph: the evaluation workers, the engine, bundle signing, the policy
// service and replays.
import type { Config } from "../config";
import type { Logger } from "../lib/logger";
import type { LiveWork } from "../lib/pacer";
import { SigningKeys } from "../keys/signing-keys";
import type { Recorder } from "../chron/chron-store";
import type { PolicyCompiler } from "../policy/compiler";
import { PolicyEngine } from "../policy/policy-engine";
import { EvaluationPool } from "../policy/evaluation/pool";
import { BudgetGate } from "../policy/budget";
import { referenceModulePath } from "../policy/runtime/reference";
import { PolicyService } from "../policy/policy-service";
import { BundleSigner } from "../policy/bundle-signing";
import { REPLAY_MAX_RUNNING, ReplayRunner } from "../policy/replay";
import type { ReplayStore } from "../policy/replay-store";
import { LeaseSlots, type LeaseStore } from "../db/lease";
import type { ChronStore } from "../chron/chron-store";
import type { IdentityStore } from "../identity/identity-store";
import type { PolicyStore } from "../policy/policy-store";

/** How long a running replay's slot outlives a process killed with it (renewed every third of it). */
const REPLAY_SLOT_TTL_MS = 30_000;

export function policyPart(config: Config, stores: { policy: PolicyStore; identity: IdentityStore; chron: ChronStore; replays: ReplayStore; leases?: LeaseStore }, compiler: PolicyCompiler, record: Recorder, live: LiveWork, logger: Logger) {
  // Policies are evaluated in worker threads, each evaluation within a deadline and a memory limit.
  const pool = new EvaluationPool(config.evaluation, config.evaluation.referenceModule ?? referenceModulePath(), logger);
  const engine = new PolicyEngine(pool);
  const signer = new BundleSigner(new SigningKeys("bundle-signing"), stores.identity, record, config.bundleSigning);
  const policies = new PolicyService({
    store: stores.policy,
    compiler,
    engine,
    signer,
    bundleDir: config.bundleDir,
    record,
    logger,
    decisionCounts: (orgId) => stores.chron.decisionsByPolicyVersion(orgId),
    chron: stores.chron,
    live,
    budget: new BudgetGate(pool, stores.chron, { samples: config.evaluation.budgetSamples }),
    tripsToStop: config.evaluation.tripsToStop,
  });
  const replays = new ReplayRunner(
    stores.chron,
    (version) => policies.load(version),
    record,
    live,
    logger,
    { tripsToStop: config.evaluation.tripsToStop },
    (job, message) => policies.replayStopped(job, message),
    stores.replays,
    stores.leases ? new LeaseSlots(stores.leases, "replay", REPLAY_MAX_RUNNING, REPLAY_SLOT_TTL_MS, logger) : null,
  );
  return { pool, engine, signer, policies, replays };
}
