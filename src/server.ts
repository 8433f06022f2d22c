import { createServer, type Server } from "node:http";
import path from "node:path";
import type { AddressInfo } from "node:net";
import type { Config } from "./config";
import { openDatabase, databaseAnswers, type Database } from "./db/database";
import { createLogger, type Logger } from "./lib/logger";
import { LiveWork } from "./lib/pacer";
import { createApp } from "./http/app";
import { document, type RouteSpec } from "./http/route";
import { generateDocument, OpenAPIRegistry } from "./http/openapi";
import { systemRoutes } from "./http/system-routes";
import { PrismaIdentityStore } from "./identity/prisma-identity-store";
import type { IdentityStore } from "./identity/identity-store";
import { SigningKeys } from "./identity/signing-keys";
import type { Checkpointer } from "./chron/checkpoints";
import { openChronKey, startChron } from "./chron/startup";
import { publishChronKey, type ChronSigner } from "./chron/signer";
import { ChronExporter } from "./chron/export";
import { redact } from "./chron/redaction";
import { ChronRetention } from "./chron/retention";
import { IdentityService } from "./identity/identity-service";
import { Authenticator } from "./identity/authenticator";
import { identityRoutes } from "./identity/identity-routes";
import { inventoryRoutes } from "./identity/inventory-routes";
import { OAuthService } from "./identity/oauth-service";
import { OidcVerifier } from "./identity/oidc";
import { oauthRoutes } from "./identity/oauth-routes";
import { OpaCliCompiler, type PolicyCompiler } from "./policy/opa-compiler";
import { PolicyEngine } from "./policy/policy-engine";
import { PrismaPolicyStore } from "./policy/prisma-policy-store";
import type { PolicyStore } from "./policy/policy-store";
import { PolicyService } from "./policy/policy-service";
import { BundleSigner } from "./policy/bundle-signing";
import { ReplayRunner } from "./policy/replay";
import { policyRoutes } from "./policy/policy-routes";
import type { ChronStore, Recorder } from "./chron/chron-store";
import { PostgresChronStore, SqliteChronStore } from "./chron/sql-chron-store";
import { ChronWriter } from "./chron/chron-writer";
import { ChronService } from "./chron/chron-service";
import { chronRoutes } from "./chron/chron-routes";
import { ReceivedHeads, witnessRoutes } from "./chron/witness-receiver";
import { DecisionService } from "./decisions/decision-service";
import { decisionRoutes } from "./decisions/decision-routes";
import { IdempotencyIndex } from "./decisions/idempotency";
import { agentRoutes } from "./decisions/agent-routes";
import type { ApprovalStore } from "./approvals/approval-store";
import { PrismaApprovalStore } from "./approvals/prisma-approval-store";
import { ApprovalService } from "./approvals/approval-service";
import { approvalRoutes } from "./approvals/approval-routes";
import type { Directory } from "./approvals/views";
import { ALL_ORGANIZATIONS } from "./identity/identity-service";

import { version as VERSION } from "../package.json";

/** A running CLAIIM: its services, its HTTP server and its database. */
export interface Claiim extends Omit<Core, "authenticator"> {
  url: string;
  server: Server;
  db: Database;
  logger: Logger;
  close(): Promise<void>;
}

export function createChronStore(db: Database): ChronStore {
  return db.kind === "sqlite" ? new SqliteChronStore(db.sqlite, db.prisma) : new PostgresChronStore(db.pool, db.prisma);
}

export interface Stores {
  identity: IdentityStore;
  policy: PolicyStore;
  chron: ChronStore;
  approval: ApprovalStore;
}

export interface Core {
  identity: IdentityService;
  policies: PolicyService;
  engine: PolicyEngine;
  chron: ChronService;
  writer: ChronWriter;
  checkpointer: Checkpointer;
  /** Chron's signing key (from its file): signs tree heads, tags records. */
  chronSigner: ChronSigner;
  approvals: ApprovalService;
  routes: RouteSpec[];
  authenticator: Authenticator;
  /** Path of the bootstrap administrator credential, when this start created it. */
  bootstrapCredentialFile: string | null;
}

/**
 * Builds and starts every service on the given stores: Prisma and SQL ones in production, fakes in
 * route tests. `databaseAnswers` feeds readiness.
 */
export async function createCore(config: Config, stores: Stores, compiler: PolicyCompiler, logger: Logger, databaseAnswers: () => Promise<boolean>): Promise<Core> {
  const tokenSettings = { issuer: config.issuer, audience: config.audience, agentTokenTtlSeconds: config.agentTokenTtlSeconds };
  // Decisions count themselves here; verification, reports and replays give way to them.
  const live = new LiveWork();
  // WARNING: Chron is verified whole, against its signed heads and the witness, before anything is
  // written: a tampered chain stops the start here, naming its first bad record.
  const key = await openChronKey(config.chronTrust, stores.chron, stores.identity, logger);
  const chronSigner = key.signer;
  // Every change of state is committed by the single Chron writer, with its record, tagged by the Chron key.
  const writer = new ChronWriter(stores.chron, config.chron.maxBatch, logger, chronSigner);
  const record: Recorder = (contents, effect) => writer.commit(contents, effect);
  const { chron, checkpointer } = await startChron({
    key,
    trust: config.chronTrust,
    policy: { everyRecords: config.chron.checkpointEveryRecords, everySeconds: config.chron.checkpointEverySeconds },
    store: stores.chron,
    identity: stores.identity,
    writer,
    live,
    logger,
    userAgent: `CLAIIM/${VERSION}`,
  });
  const exporter = new ChronExporter(stores.chron, chron, checkpointer, record, config.chron.jsonExportMax, logger, live, {
    writerHead: () => writer.knownHead(),
    lastWitnessed: () => checkpointer.lastWitnessed(),
    signer: chronSigner,
  });
  const retention = new ChronRetention(stores.chron, exporter, checkpointer.keys(), record, config.archiveDir, logger, (head) => checkpointer.at(head));

  const signingKeys = new SigningKeys("agent-token");
  const identity = new IdentityService(stores.identity, signingKeys, tokenSettings, record, logger);
  await identity.start();
  const bootstrapCredentialFile = await identity.ensureBootstrapAdmin(config.dataDir);

  const engine = new PolicyEngine();
  const signer = new BundleSigner(new SigningKeys("bundle-signing"), stores.identity, record, config.bundleSigning);
  await signer.start();
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
  });
  await policies.start(config.regoDir);

  // Keys of recent decisions come back from Chron, so a retry across a restart gets the first answer.
  const idempotency = new IdempotencyIndex({ ttlMs: config.idempotency.ttlSeconds * 1000, maxKeys: config.idempotency.maxKeys, publicUrl: config.publicUrl });
  const reloadStarted = Date.now();
  const reloaded = idempotency.load(await stores.chron.latest({ kind: "decision", fromMs: reloadStarted - config.idempotency.ttlSeconds * 1000 }, config.idempotency.maxKeys));
  logger.info("idempotency keys reloaded from Chron", { keys: reloaded, ms: Date.now() - reloadStarted });
  // What approvals read of identities, from the in-memory directory.
  const directory: Directory = {
    agentContext: (id) => identity.agentContext(id),
    human: (id) => {
      try {
        return identity.human(id, ALL_ORGANIZATIONS);
      } catch {
        return undefined;
      }
    },
    humanByEmail: (orgId, email) => identity.listHumans({ orgId }, orgId).find((h) => h.email === email),
    organization: (id) => identity.organization(id),
  };
  const approvals = new ApprovalService(
    { store: stores.approval, record, redact: (content) => redact(content, config.redaction), directory, logger },
    {
      ...config.approvals,
      keepClosedSeconds: 24 * 3600,
      maxOpenPerAgent: 100,
      maxWaiters: 1000,
      publicUrl: config.publicUrl,
      userAgent: `CLAIIM/${VERSION}`,
    },
  );
  await approvals.start();

  const decisions = new DecisionService(
    {
      agentContext: (id) => identity.agentContext(id),
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
  const oauth = new OAuthService(
    stores.identity,
    identity,
    signingKeys,
    {
      issuer: config.issuer,
      audience: config.audience,
      accessTokenTtlSeconds: config.accessTokenTtlSeconds,
      clockSkewSeconds: config.clockSkewSeconds,
      tokenEndpoint: `${config.publicUrl}/oauth/token`,
    },
    record,
    logger,
  );
  await oauth.start();
  const authenticator = new Authenticator(identity, oauth, signingKeys, tokenSettings, config.oidc ? new OidcVerifier(config.oidc, identity) : null);

  let openapi: unknown = null;
  const routes: RouteSpec[] = [
    ...systemRoutes({ policyVersion: () => engine.active()?.version ?? null, databaseAnswers, chronHalted: () => writer.haltedBy()?.message ?? null }, () => openapi),
    // The JWKS holds the token keys, and every Chron checkpoint and bundle-signing key, so that old exports and bundles stay checkable.
    ...identityRoutes(identity, () => ({ keys: [...identity.jwks().keys, ...chronSigner.publicKeys().map(publishChronKey), ...signer.jwks()] })),
    ...inventoryRoutes(identity, engine),
    ...oauthRoutes(oauth, identity, config.keyOverlapSeconds),
    ...decisionRoutes(decisions),
    ...agentRoutes(identity, engine),
    ...approvalRoutes(approvals, identity, directory, config.publicUrl),
    ...chronRoutes(chron, exporter, retention, identity),
    ...witnessRoutes(new ReceivedHeads(path.join(config.chronTrust.witnessDir, "received"), logger)),
    ...policyRoutes(policies, new ReplayRunner(stores.chron, (version) => policies.load(version), record, live, logger), config.bodyLimits.policy),
  ];
  const registry = new OpenAPIRegistry();
  document(registry, routes);
  openapi = generateDocument(registry, VERSION);
  return { identity, policies, engine, chron, writer, checkpointer, chronSigner, approvals, routes, authenticator, bootstrapCredentialFile };
}

export function createHttpApp(core: Core, config: Config, logger: Logger) {
  return createApp(core.routes, { authenticate: (h) => core.authenticator.authenticate(h), defaultBodyLimit: config.bodyLimits.default }, logger);
}

/** The composition root: every dependency is built here and nowhere else. */
export async function startClaiim(config: Config, logger: Logger = createLogger(config.logLevel)): Promise<Claiim> {
  const db = await openDatabase(config.databaseKind, config.databaseUrl, (err) => logger.warn("idle database connection failed", { error: err.message }));
  try {
    const core = await createCore(
      config,
      { identity: new PrismaIdentityStore(db.prisma), policy: new PrismaPolicyStore(db.prisma), chron: createChronStore(db), approval: new PrismaApprovalStore(db.prisma) },
      new OpaCliCompiler(config.opaBin),
      logger,
      () => databaseAnswers(db),
    );
    const { authenticator: _authenticator, ...services } = core;
    const app = createHttpApp(core, config, logger);
    const server = createServer(app);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.port, config.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
    logger.info("CLAIIM listening", { url, database: config.databaseKind, policy_version: core.engine.active()?.version ?? null });

    return {
      ...services,
      url,
      server,
      db,
      logger,
      async close() {
        // Long-polls answer now, and webhook deliveries stop, so that the server can close.
        await core.approvals.stop();
        // In-flight requests finish (and their Chron records commit) before the writer closes.
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        await closed;
        await core.writer.close();
        await core.checkpointer.stop();
        await db.close();
      },
    };
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }
}
