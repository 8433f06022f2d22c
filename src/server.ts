import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Config } from "./config";
import { openDatabase, databaseAnswers, type Database } from "./db/database";
import { createLogger, type Logger } from "./lib/logger";
import { createApp } from "./http/app";
import { document, type RouteSpec } from "./http/route";
import { generateDocument, OpenAPIRegistry } from "./http/openapi";
import { systemRoutes } from "./http/system-routes";
import { PrismaIdentityStore } from "./identity/prisma-identity-store";
import { SigningKeys } from "./identity/signing-keys";
import { IdentityService } from "./identity/identity-service";
import { Authenticator } from "./identity/authenticator";
import { identityRoutes } from "./identity/identity-routes";
import { OpaCliCompiler } from "./policy/opa-compiler";
import { PolicyEngine } from "./policy/policy-engine";
import { PrismaPolicyStore } from "./policy/prisma-policy-store";
import { PolicyService } from "./policy/policy-service";
import { policyRoutes } from "./policy/policy-routes";
import type { ChronStore } from "./chron/chron-store";
import { PostgresChronStore, SqliteChronStore } from "./chron/sql-chron-store";
import { ChronWriter } from "./chron/chron-writer";
import { ChronService } from "./chron/chron-service";
import { chronRoutes } from "./chron/chron-routes";
import { DecisionService } from "./decisions/decision-service";
import { decisionRoutes } from "./decisions/decision-routes";

const VERSION: string = (require("../package.json") as { version: string }).version;

export interface Claiim {
  url: string;
  server: Server;
  db: Database;
  logger: Logger;
  identity: IdentityService;
  policies: PolicyService;
  engine: PolicyEngine;
  chron: ChronService;
  writer: ChronWriter;
  /** Path of the bootstrap administrator credential, when this start created it. */
  bootstrapCredentialFile: string | null;
  close(): Promise<void>;
}

export function createChronStore(db: Database): ChronStore {
  return db.kind === "sqlite" ? new SqliteChronStore(db.sqlite) : new PostgresChronStore(db.pool);
}

/** The composition root: every dependency is built here and nowhere else. */
export async function startClaiim(config: Config, logger: Logger = createLogger(config.logLevel)): Promise<Claiim> {
  const db = await openDatabase(config.databaseKind, config.databaseUrl);
  try {
    const identityStore = new PrismaIdentityStore(db.prisma);
    const tokenSettings = { issuer: config.issuer, audience: config.audience, agentTokenTtlSeconds: config.agentTokenTtlSeconds };
    const signingKeys = new SigningKeys(identityStore, "agent-token");
    const identity = new IdentityService(identityStore, signingKeys, tokenSettings, logger);
    await identity.start();
    const bootstrapCredentialFile = await identity.ensureBootstrapAdmin(config.dataDir);

    const engine = new PolicyEngine();
    const policies = new PolicyService(new PrismaPolicyStore(db.prisma), new OpaCliCompiler(config.opaBin), engine, config.bundleDir, logger);
    await policies.start(config.regoDir);

    const chronStore = createChronStore(db);
    const writer = new ChronWriter(chronStore, config.chron.maxBatch, logger);
    const chron = new ChronService(chronStore, writer);
    const decisions = new DecisionService(
      {
        agentContext: (id) => identity.agentContext(id),
        activePolicy: () => engine.active(),
        record: (content) => writer.append(content),
      },
      logger,
    );
    const authenticator = new Authenticator(identity, signingKeys, tokenSettings);

    let openapi: unknown = null;
    const routes: RouteSpec[] = [
      ...systemRoutes({ policyVersion: () => engine.active()?.version ?? null, databaseAnswers: () => databaseAnswers(db) }, () => openapi),
      ...identityRoutes(identity),
      ...decisionRoutes(decisions),
      ...chronRoutes(chron, identity),
      ...policyRoutes(policies, config.bodyLimits.policy),
    ];
    const registry = new OpenAPIRegistry();
    document(registry, routes);
    openapi = generateDocument(registry, VERSION);

    const app = createApp(routes, { authenticate: (h) => authenticator.authenticate(h), defaultBodyLimit: config.bodyLimits.default }, logger);
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
    logger.info("CLAIIM listening", { url, database: config.databaseKind, policy_version: engine.active()?.version ?? null });

    return {
      url,
      server,
      db,
      logger,
      identity,
      policies,
      engine,
      chron,
      writer,
      bootstrapCredentialFile,
      async close() {
        await new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await writer.close();
        await db.close();
      },
    };
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }
}
