import path from "node:path";
// The composition root: every service is built here, and nowhere else, on the stores it is given
// (Prisma and SQL ones in production, fakes in route tests). Building does no I/O; start() then
// brings the services up in order, and stop() takes them down in the reverse order.
import type { Config } from "./config";
import type { Logger } from "./lib/logger";
import { LiveWork } from "./lib/pacer";
import { Serial } from "./lib/serial";
import { document, type RouteSpec } from "./http/route";
import { generateDocument, OpenAPIRegistry } from "./http/openapi";
import { systemRoutes } from "./http/system-routes";
import { SigningKeys } from "./keys/signing-keys";
import type { ChronStore, Recorder } from "./chron/chron-store";
import type { EventContent } from "./chron/record";
import { ChronWriter } from "./chron/chron-writer";
import { ChronFollower, type ChangeNotices } from "./chron/follower";
import type { Checkpointer } from "./chron/checkpoints";
import { buildChron, openChronKey, type OpenedChronKey } from "./chron/startup";
import { publishChronKey, type ChronSigner } from "./chron/signer";
import { ReceivedHeads, witnessRoutes } from "./chron/witness-receiver";
import type { ChronService } from "./chron/chron-service";
import type { ChronVerifier } from "./chron/verification";
import { ChronExporter } from "./chron/export";
import { ChronRetention } from "./chron/retention";
import { redact } from "./chron/redaction";
import { chronRoutes } from "./chron/chron-routes";
import { ChronCoordinator } from "./chron/coordinator";
import type { IdentityStore } from "./identity/identity-store";
import { IdentityDirectory } from "./identity/directory";
import { IdentityFollower } from "./identity/follower";
import { IdentityService } from "./identity/identity-service";
import { CredentialService } from "./identity/credential-service";
import { ApiKeyService } from "./identity/api-key-service";
import { TokenMinter } from "./identity/tokens";
import { OAuthService } from "./identity/oauth-service";
import { OidcVerifier } from "./identity/oidc";
import { Authenticator } from "./identity/authenticator";
import { identityRoutes } from "./identity/identity-routes";
import { inventoryRoutes } from "./identity/inventory-routes";
import { meRoutes } from "./identity/me-routes";
import { oauthRoutes } from "./identity/oauth-routes";
import type { PolicyCompiler } from "./policy/opa-compiler";
import { PolicyEngine } from "./policy/policy-engine";
import { EvaluationPool } from "./policy/evaluation/pool";
import { BudgetGate } from "./policy/budget";
import { referenceModulePath } from "./policy/runtime/reference";
import type { PolicyStore } from "./policy/policy-store";
import { PolicyService } from "./policy/policy-service";
import { BundleSigner } from "./policy/bundle-signing";
import { ReplayRunner } from "./policy/replay";
import { policyRoutes } from "./policy/policy-routes";
import type { ApprovalStore } from "./approvals/approval-store";
import { ApprovalService } from "./approvals/approval-service";
import { approvalRoutes } from "./approvals/approval-routes";
import type { Directory } from "./approvals/views";
import { DecisionService } from "./decisions/decision-service";
import { decisionRoutes } from "./decisions/decision-routes";
import { IdempotencyIndex } from "./decisions/idempotency";
import { permissionRoutes } from "./decisions/permission-routes";
import { ALL_ORGANIZATIONS } from "./shared/principal";
import { Metrics } from "./ops/metrics";
import { RateLimits } from "./ops/rate-limits";
import { Tracing } from "./ops/tracing";
import { chronHealth } from "./ops/health";
import { metricsRoutes } from "./http/metrics-routes";
import { holderName, Lease, type LeaseStore } from "./db/lease";

import { version as VERSION } from "../package.json";

export interface Stores {
  identity: IdentityStore;
  policy: PolicyStore;
  chron: ChronStore;
  approval: ApprovalStore;
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
export function buildCore(config: Config, stores: Stores, compiler: PolicyCompiler, logger: Logger, databaseAnswers: () => Promise<boolean>, chronKey: OpenedChronKey): Core {
  const tokenSettings = { issuer: config.issuer, audience: config.audience, agentTokenTtlSeconds: config.agentTokenTtlSeconds };
  const chronSigner = chronKey.signer;
  // Another process's changes reach this one through the Chron events it commits (follow, below);
  // this process's own are known to the follower as they are appended, and skipped.
  let follow: (event: EventContent) => Promise<void> = async () => undefined;
  const follower = new ChronFollower(stores.chron, (event) => follow(event), config.sync, logger, stores.changeNotices ?? null);
  // Every change of state is committed by the single Chron writer, with its record, tagged by the Chron key.
  const writer = new ChronWriter(follower.track(stores.chron), config.chron.maxBatch, logger, chronSigner);
  // Decisions count themselves here; verification, reports and replays give way to them.
  const live = new LiveWork();
  const record: Recorder = (contents, effect) => writer.commit(contents, effect);

  // WARNING: start() verifies Chron whole, against its signed heads and the witness, before anything
  // is written: a tampered chain stops the start there, naming its first bad record.
  const chronParts = buildChron({
    key: chronKey,
    trust: config.chronTrust,
    policy: { everyRecords: config.chron.checkpointEveryRecords, everySeconds: config.chron.checkpointEverySeconds },
    store: stores.chron,
    identity: stores.identity,
    writer,
    live,
    logger,
    userAgent: `CLAIIM/${VERSION}`,
  });
  const { chron, verifier, checkpointer } = chronParts;
  const exporter = new ChronExporter(stores.chron, verifier, checkpointer, record, config.chron.jsonExportMax, logger, live, {
    writerHead: () => writer.knownHead(),
    lastWitnessed: () => checkpointer.lastWitnessed(),
    signer: chronSigner,
  });
  const retention = new ChronRetention(stores.chron, exporter, checkpointer.keys(), record, config.archiveDir, logger, (head) => checkpointer.at(head), (work) =>
    stores.leases ? new Lease(stores.leases, "retention", holderName(), 30_000, logger, () => undefined).exclusively(work, 0) : work(),
  );

  // Identity changes of every kind go one at a time, so that each one's "before" is exact.
  const serial = new Serial();
  const directory = new IdentityDirectory();
  const identity = new IdentityService(directory, stores.identity, record, logger, serial);
  const tokenKeys = new SigningKeys("agent-token");
  const minter = new TokenMinter(tokenKeys, tokenSettings);
  const credentials = new CredentialService(identity, stores.identity, tokenKeys, minter, record, logger, serial);
  const apiKeys = new ApiKeyService(directory, stores.identity, record, serial);
  const oauthSettings = {
    issuer: config.issuer,
    audience: config.audience,
    accessTokenTtlSeconds: config.accessTokenTtlSeconds,
    clockSkewSeconds: config.clockSkewSeconds,
    tokenEndpoint: `${config.publicUrl}/oauth/token`,
  };
  const oauth = new OAuthService(stores.identity, directory, minter, oauthSettings, record, logger, serial);
  // WARNING: no authenticated request is answered from state older than the bound (503 state_stale).
  const authenticator = new Authenticator(directory, oauth, tokenKeys, tokenSettings, config.oidc ? new OidcVerifier(config.oidc, directory) : null, () => follower.ensureFresh());
  const identityFollower = new IdentityFollower(directory, stores.identity, oauth, tokenKeys, serial, logger);

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
  follow = async (event) => {
    await identityFollower.apply(event);
    await policies.followChange(event);
    if (event.subject.type === "approval") await approvals.followChange(event.subject.id);
  };
  const replays = new ReplayRunner(stores.chron, (version) => policies.load(version), record, live, logger, { tripsToStop: config.evaluation.tripsToStop }, (job, message) =>
    policies.replayStopped(job, message),
  );

  // What approvals read of identities, from the in-memory directory.
  const approvalDirectory: Directory = {
    agentContext: (id) => directory.agentContext(id),
    human: (id) => {
      try {
        return directory.human(id, ALL_ORGANIZATIONS);
      } catch {
        return undefined;
      }
    },
    humanByEmail: (orgId, email) => directory.humanInOrganization(orgId, email),
    organization: (id) => directory.organization(id),
  };
  const approvalSettings = { ...config.approvals, keepClosedSeconds: 24 * 3600, maxOpenPerAgent: 100, maxWaiters: 1000, publicUrl: config.publicUrl, userAgent: `CLAIIM/${VERSION}` };
  const approvals = new ApprovalService({ store: stores.approval, record, redact: (content) => redact(content, config.redaction), directory: approvalDirectory, logger }, approvalSettings);

  const idempotency = new IdempotencyIndex({ ttlMs: config.idempotency.ttlSeconds * 1000, maxKeys: config.idempotency.maxKeys, publicUrl: config.publicUrl });
  const decisions = new DecisionService(
    {
      agentContext: (id) => directory.agentContext(id),
      activePolicy: () => engine.active(),
      shadowPolicy: () => engine.shadow(),
      record: (content) => writer.append(content),
      redact: (content) => redact(content, config.redaction),
      approvals,
    },
    logger,
    live,
    idempotency,
  );

  // Operating CLAIIM: what the metrics read, the rate limits (their refusals counted), traces.
  const metrics = new Metrics({
    chron: () => {
      const cp = checkpointer.health();
      return { queued: writer.health().queued, unsignedRecords: cp.unsigned, checkpointLagSeconds: cp.lagSeconds };
    },
    evaluation: () => pool.stats(),
  });
  // Only this process's own commits: records another process committed are counted there.
  writer.onCommit((rows, seconds) => seconds !== null && metrics.committed(rows, seconds));
  writer.onFailure((seconds) => metrics.commitFailed(seconds));
  pool.onOutcome((o) => metrics.evaluated(o));
  const limits = new RateLimits(config.ops.rateLimits, (limit) => metrics.limited(limit));
  const tracing = new Tracing(config.ops.tracing, VERSION);
  const health = () => chronHealth(writer.health(), checkpointer.health(), { stuckSeconds: config.ops.chronStuckSeconds, checkpointEverySeconds: config.chron.checkpointEverySeconds });
  const coordinator = new ChronCoordinator(stores.leases, checkpointer, config.chron.coordinatorLeaseMs, logger);

  let openapi: unknown = null;
  const core: Core = {
    directory,
    identity,
    credentials,
    apiKeys,
    oauth,
    policies,
    engine,
    replays,
    chron,
    verifier,
    writer,
    checkpointer,
    follower,
    chronSigner,
    approvals,
    decisions,
    routes: [],
    authenticator,
    metrics,
    limits,
    tracing,
    bootstrapCredentialFile: null,
    stopping: false,
    async start() {
      await chronParts.start();
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
      };
      if (stores.leases) await new Lease(stores.leases, "start-up", holderName(), Math.max(30_000, config.chron.coordinatorLeaseMs), logger, () => undefined).exclusively(firstStart, 120_000);
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
  core.routes = [
    ...systemRoutes({ policyVersion: () => engine.active()?.version ?? null, databaseAnswers, stopping: () => core.stopping, chron: health, chronHalted: () => writer.haltedBy()?.message ?? null, behind: () => follower.problem() }, () => openapi),
    ...metricsRoutes(metrics),
    // The JWKS holds the token keys, and every Chron checkpoint and bundle-signing key, so that old exports and bundles stay checkable.
    ...identityRoutes({ identity, credentials, apiKeys }, () => ({ keys: [...minter.jwks().keys, ...chronSigner.publicKeys().map(publishChronKey), ...signer.jwks()] })),
    ...inventoryRoutes(directory),
    ...meRoutes(directory),
    ...oauthRoutes(oauth, credentials, config.keyOverlapSeconds, (address, clientId) => limits.admitToken(address, clientId)),
    ...decisionRoutes(decisions),
    ...permissionRoutes(directory, engine),
    ...approvalRoutes(approvals, directory, approvalDirectory, config.publicUrl),
    ...chronRoutes(chron, verifier, exporter, retention, directory),
    ...witnessRoutes(new ReceivedHeads(path.join(config.chronTrust.witnessDir, "received"), logger)),
    ...policyRoutes(policies, replays, config.bodyLimits.policy),
  ];
  const registry = new OpenAPIRegistry();
  document(registry, core.routes);
  openapi = generateDocument(registry, VERSION);
  return core;
}

/** Builds and starts: a core ready to serve. */
export async function createCore(config: Config, stores: Stores, compiler: PolicyCompiler, logger: Logger, databaseAnswers: () => Promise<boolean>): Promise<Core> {
  const core = buildCore(config, stores, compiler, logger, databaseAnswers, await openCoreChronKey(config, stores, logger));
  await core.start();
  return core;
}
