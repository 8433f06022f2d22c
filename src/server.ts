import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Config } from "./config";
import { openDatabase, databaseAnswers, type Database } from "./db/database";
import { leaseStore } from "./db/lease";
import { createLogger, type Logger } from "./lib/logger";
import { createApp } from "./http/app";
import { PrismaIdentityStore } from "./identity/prisma-identity-store";
import { OpaCliCompiler } from "./policy/opa-compiler";
import { PrismaPolicyStore } from "./policy/prisma-policy-store";
import type { ChronStore } from "./chron/chron-store";
import { PostgresChronStore, SqliteChronStore } from "./chron/sql-chron-store";
import { PrismaApprovalStore } from "./approvals/prisma-approval-store";
import { consoleHandler } from "./console/console-handler";
import { buildCore, openCoreChronKey, type Core, type Stores } from "./core";

export { buildCore, createCore, type Core, type Stores } from "./core";

/** A running CLAIIM: its services, its HTTP server and its database. */
export interface Claiim extends Omit<Core, "authenticator" | "start" | "stop"> {
  url: string;
  server: Server;
  db: Database;
  logger: Logger;
  /** Stops, bounded by CLAIIM_SHUTDOWN_TIMEOUT_SECONDS: readiness first, then requests, then the services in reverse order of start. */
  close(): Promise<void>;
}

export function createChronStore(db: Database): ChronStore {
  return db.kind === "sqlite" ? new SqliteChronStore(db.sqlite, db.prisma) : new PostgresChronStore(db.pool, db.prisma);
}

export function createHttpApp(core: Core, config: Config, logger: Logger) {
  return createApp(core.routes, { authenticate: (h) => core.authenticator.authenticate(h), defaultBodyLimit: config.bodyLimits.default }, logger, [
    consoleHandler(config.console, config.oidc, logger),
  ]);
}

/** Opens the database, builds and starts the core on it, and listens. */
export async function startClaiim(config: Config, logger: Logger = createLogger(config.logLevel)): Promise<Claiim> {
  const db = await openDatabase(config.databaseKind, config.databaseUrl, (err) => logger.warn("idle database connection failed", { error: err.message }));
  const stores: Stores = {
    identity: new PrismaIdentityStore(db.prisma),
    policy: new PrismaPolicyStore(db.prisma),
    chron: createChronStore(db),
    approval: new PrismaApprovalStore(db.prisma),
    leases: leaseStore(db),
  };
  let core: Core;
  try {
    core = buildCore(config, stores, new OpaCliCompiler(config.opaBin), logger, () => databaseAnswers(db), await openCoreChronKey(config, stores, logger));
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }
  try {
    await core.start();
  } catch (err) {
    await core.stop().catch(() => undefined);
    await db.close().catch(() => undefined);
    throw err;
  }
  const server = createServer(createHttpApp(core, config, logger));
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

  const { authenticator: _authenticator, start: _start, stop: _stop, ...services } = core;
  return {
    ...services,
    get bootstrapCredentialFile() {
      return core.bootstrapCredentialFile;
    },
    get stopping() {
      return core.stopping;
    },
    url,
    server,
    db,
    logger,
    close: () => stopClaiim(core, server, db, config.shutdownTimeoutSeconds * 1000, logger),
  };
}

/**
 * The bounded stop: readiness answers 503 at once; in-flight requests (and their Chron records)
 * get until the deadline to finish, then their connections are cut; then the services stop in the
 * reverse order of their start, and the database closes.
 */
async function stopClaiim(core: Core, server: Server, db: Database, timeoutMs: number, logger: Logger): Promise<void> {
  core.stopping = true;
  const started = Date.now();
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const deadline = new Promise<"late">((resolve) => setTimeout(() => resolve("late"), timeoutMs).unref());
  if ((await Promise.race([closed, deadline])) === "late") {
    logger.warn("requests still in flight at the shutdown deadline; closing their connections", { timeout_ms: timeoutMs });
    server.closeAllConnections();
    await closed;
  }
  await core.stop();
  await db.close();
  logger.info("CLAIIM stopped", { ms: Date.now() - started });
}
