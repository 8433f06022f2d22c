// The composition root: every service is built here, and nowhere else, on the stores it is given
// (Prisma and SQL ones in production, fakes in route tests), one pillar at a time (src/wiring/).
// Building does no I/O; start() then brings the services up in order, and stop() takes them down
// in the reverse order.
import type { Config } from "./config";
import type { Logger } from "./lib/logger";
import type { RouteSpec } from "./http/route";
import type { ChronStore } from "./chron/chron-store";
import type { Peers } from "./shared/peers";
import type { ChangeNotices, ChronFollower } from "./chron/follower";
import type { ChronWriter } from "./chron/chron-writer";
import type { Checkpointer, ChronStart } from "./chron/checkpoints";
import { openChronKey, type OpenedChronKey } from "./chron/startup";
import type { ChronSigner } from "./chron/signer";
import type { ChronService } from "./chron/chron-service";
import type { ChronVerifier } from "./chron/verification";
import type { IdentityStore } from "./identity/identity-store";
import type { IdentityDirectory } from "./identity/directory";
import type { IdentityService } from "./identity/identity-service";
import type { CredentialService } from "./identity/credential-service";
import type { ApiKeyService } from "./identity/api-key-service";
import type { OAuthService } from "./identity/oauth-service";
import type { Authenticator } from "./identity/authenticator";
import type { PolicyCompiler } from "./policy/compiler";
import type { PolicyEngine } from "./policy/policy-engine";
import type { PolicyStore } from "./policy/policy-store";
import type { PolicyService } from "./policy/policy-service";
import type { ReplayRunner } from "./policy/replay";
import type { ApprovalStore } from "./approvals/approval-store";
import type { ReceivedHeadStore } from "./chron/received-store";
import type { ReplayStore } from "./policy/replay-store";
import type { ApprovalService } from "./approvals/approval-service";
import type { DecisionService } from "./decisions/decision-service";
import type { Metrics } from "./ops/metrics";
import type { RateLimits } from "./ops/rate-limits";
import type { Tracing } from "./ops/tracing";
import { holderName, Lease, type LeaseStore } from "./db/lease";
import { chronPart } from "./wiring/chron";
import { identityPart } from "./wiring/identity";
import { policyPart } from "./wiring/policy";
import { approvalPart, decisionPart } from "./wiring/decisions";
import { opsPart } from "./wiring/ops";
import { routesOf } from "./wiring/routes";

import { version as VERSION } from "../package.json";

/**
 * How long a process starting waits for another's start-up work: as long as that process keeps
 * renewing the start-up lease (an upgrade may import large files under it), in steps of
 * START_UP_WAIT_MS, up to START_UP_MAX_WAIT_MS; START_UP_WAIT_MS when no holder can be seen renewing.
 */
const START_UP_WAIT_MS = 120_000;
const START_UP_MAX_WAIT_MS = 30 * 60_000;

export interface Stores {
  identity: IdentityStore;
  policy: PolicyStore;
  chron: ChronStore;
  approval: ApprovalStore;
  /** The heads this CLAIIM holds as the witness of other CLAIIMs. */
  received: ReceivedHeadStore;
  /** Policy replays, saved for every process on the database. */
  replays: ReplayStore;
  /** How this process hears at once of events other processes commit (PostgreSQL's LISTEN); without it, it polls only. */
  changeNotices?: ChangeNotices;
  /** Leases in the database, shared by every CLAIIM process on it; without them (route tests) this process is the only one, and coordinates. */
  leases?: LeaseStore;
}

export interface Core {
  directory: IdentityDirectory;
  identity: IdentityService;
  credentials: CredentialService;
  apiKeys: ApiKeyService;
  oauth: OAuthService;
  policies: PolicyService;
  engine: PolicyEngine;
  replays: ReplayRunner;
  chron: ChronService;
  verifier: ChronVerifier;
  writer: ChronWriter;
  checkpointer: Checkpointer;
  /** Keeps what this process holds in memory up to date with the changes other processes commit. */
  follower: ChronFollower;
  /** Chron's signing key (from its file): signs tree heads, tags records. */
  chronSigner: ChronSigner;
  approvals: ApprovalService;
  decisions: DecisionService;
  routes: RouteSpec[];
  authenticator: Authenticator;
  metrics: Metrics;
  limits: RateLimits;
  tracing: Tracing;
  /** Path of the bootstrap administrator credential, when start() created it. */
  bootstrapCredentialFile: string | null;
  /** True from the moment stop() begins: readiness answers 503 first, so balancers look elsewhere. */
  stopping: boolean;
  /** The verified head and Merkle frontier start() went on from (what a worker mode primary hands its workers). */
  chronStartedFrom(): ChronStart | null;
  start(): Promise<void>;
  /** The first step of a stop, before requests drain: not ready any more, and long-polls answer now. */
  beginStop(): void;
  stop(): Promise<void>;
}

/**
 * Opens Chron's signing key (its file, created beside the database the first time; see
 * openChronKey): the key decides what the writer tags and who signs tree heads, so every service
 * is built on it.
 */
export function openCoreChronKey(config: Config, stores: Stores, logger: Logger): Promise<OpenedChronKey> {
  return openChronKey(config.chronTrust, stores.chron, stores.identity, logger);
}

/** Builds every service and route on an opened Chron key; nothing runs and nothing more is read until start(). */
export function buildCore(
  config: Config,
  stores: Stores,
  compiler: PolicyCompiler,
  logger: Logger,
  databaseAnswers: () => Promise<boolean>,
  chronKey: OpenedChronKey,
  /** `vouched`: Chron verified whole moments ago by this deployment's worker mode primary (see buildChron); `peers`: the other workers, in worker mode. */
  options: { vouched?: ChronStart; peers?: Peers } = {},
): Core {
  const userAgent = `CLAIIM/${VERSION}`;
  const chron = chronPart(config, stores, chronKey, logger, userAgent, options.vouched, options.peers);
  const { follower, writer, checkpointer, coordinator, record, live } = chron;
  const identity = identityPart(config, stores, record, logger, () => follower.ensureFresh());
  const { directory, credentials, apiKeys, oauth } = identity;
  const policy = policyPart(config, stores, compiler, record, live, logger);
  const { pool, signer, policies, replays, engine } = policy;
  const approvalParts = approvalPart(config, stores, directory, record, logger, userAgent);
  const { approvals } = approvalParts;
  const decisionParts = decisionPart(config, { directory, engine, writer, approvals, live }, logger);
  const { idempotency } = decisionParts;
  chron.onFollow(async (event) => {
    await identity.follower.apply(event);
    await policies.followChange(event);
    if (event.subject.type === "approval") await approvals.followChange(event.subject.id);
  });
  const ops = opsPart(config, { writer, checkpointer, pool }, VERSION);
  const { tracing } = ops;

  const core: Core = {
    directory,
    identity: identity.identity,
    credentials,
    apiKeys,
    oauth,
    policies,
    engine,
    replays,
    chron: chron.chron,
    verifier: chron.verifier,
    writer,
    checkpointer,
    follower,
    chronSigner: chron.chronSigner,
    approvals,
    decisions: decisionParts.decisions,
    routes: [],
    authenticator: identity.authenticator,
    metrics: ops.metrics,
    limits: ops.limits,
    tracing,
    bootstrapCredentialFile: null,
    stopping: false,
    chronStartedFrom: () => chron.startedFrom(),
    async start() {
      await chron.start();
      // Before any state is loaded: what is committed after this head is followed.
      await follower.from();
      await coordinator.start();
      // WARNING: what a first start creates (the token and bundle-signing keys, the bootstrap
      // credential, the reference policies from rego/) is created by one process: processes
      // starting together on one database take turns through this lease, each reading what the
      // one before created. Its time to live is long (30 s) so that a start slowed down (SQLite's
      // synchronous waits for the write lock) does not lose it midway; a process killed while
      // starting delays the others' starts by that much at most.
      const firstStart = async () => {
        await credentials.start();
        await directory.load(stores.identity);
        core.bootstrapCredentialFile = await apiKeys.ensureBootstrapAdmin(config.dataDir);
        await pool.start();
        await signer.start();
        await policies.start(config.regoDir);
        // Heads received as a witness by earlier versions, in files (per process), into the database.
        await chron.received.importFiles(config.chronTrust.witnessDir);
      };
      if (stores.leases) await new Lease(stores.leases, "start-up", holderName(), Math.max(30_000, config.chron.coordinatorLeaseMs), logger, () => undefined).exclusively(firstStart, START_UP_WAIT_MS, START_UP_MAX_WAIT_MS);
      else await firstStart();
      // Keys of recent decisions come back from Chron, so a retry across a restart gets the first answer.
      const reloadStarted = Date.now();
      const reloaded = idempotency.load(await stores.chron.latest({ kind: "decision", fromMs: reloadStarted - config.idempotency.ttlSeconds * 1000 }, config.idempotency.maxKeys));
      logger.info("idempotency keys reloaded from Chron", { keys: reloaded, ms: Date.now() - reloadStarted });
      await approvals.start();
      await oauth.start();
      await follower.start();
    },
    beginStop() {
      core.stopping = true;
      approvals.endWaits();
    },
    async stop() {
      core.beginStop();
      // Other processes' changes are no longer followed: this one answers nothing more from memory.
      await follower.stop();
      // Long-polls answer now and webhook deliveries stop; running replays end at their next step.
      await approvals.stop();
      await replays.stop();
      // What is queued commits; then nothing more is written.
      await writer.close();
      await checkpointer.stop();
      await coordinator.stop();
      await pool.close();
      // Spans still buffered go out (bounded by the exporter's own timeout).
      await tracing.shutdown().catch((err: Error) => logger.warn("traces not all exported at stop", { error: err.message }));
    },
  };
  const parts = { chron, identity, policy, approvals: approvalParts, decisions: decisionParts, ops };
  core.routes = routesOf(config, parts, { databaseAnswers, stopping: () => core.stopping }, VERSION);
  return core;
}

/** Builds and starts: a core ready to serve. */
export async function createCore(config: Config, stores: Stores, compiler: PolicyCompiler, logger: Logger, databaseAnswers: () => Promise<boolean>): Promise<Core> {
  const core = buildCore(config, stores, compiler, logger, databaseAnswers, await openCoreChronKey(config, stores, logger));
  await core.start();
  return core;
}
