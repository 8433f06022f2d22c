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
import type { Peers } from "./shared/peers";
import type { ChronStart } from "./chron/checkpoints";
import { PostgresChronStore, SqliteChronStore } from "./chron/sql-chron-store";
import { PostgresChangeNotices } from "./chron/follower";
import { sqlReceivedHeadStore } from "./chron/received-store";
import { PrismaApprovalStore } from "./approvals/prisma-approval-store";
import { consoleHandler } from "./console/console-handler";
import { buildCore, openCoreChronKey, type Core, type Stores } from "./core";
import { prismaReplayStore } from "./policy/replay-store";

export { buildCore, createCore, type Core, type Stores } from "./core";

/** A running CLAIIM: its services, its HTTP server and its database. */
export interface Claiim extends Omit<Core, "authenticator" | "start" | "stop" | "beginStop"> {
  url: string;
  /** Where the separate metrics listener serves /metrics (CLAIIM_METRICS_ADDRESS), or null. */
  metricsUrl: string | null;
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
  return createApp(
    core.routes,
    { authenticate: (h) => core.authenticator.authenticate(h), defaultBodyLimit: config.bodyLimits.default, catchUp: () => core.follower.catchUpNow() },
    logger,
    [consoleHandler(config.console, config.oidc, logger)],
    { metrics: core.metrics, limits: core.limits, tracing: core.tracing, trustProxy: config.ops.trustProxy },
  );
}

/** The separate listener of CLAIIM_METRICS_ADDRESS: GET /metrics without a credential, nothing else. */
export function metricsServer(scrape: () => Promise<{ text: string; contentType: string }>): Server {
  return createServer((req, res) => {
    if (req.url?.split("?")[0] !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("only GET /metrics is served here\n");
      return;
    }
    scrape().then(
      ({ text, contentType }) => res.writeHead(200, { "Content-Type": contentType, "Cache-Control": "no-store" }).end(req.method === "HEAD" ? undefined : text),
      () => res.writeHead(500, { "Content-Type": "text/plain" }).end("metrics could not be collected\n"),
    );
  });
}

export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

export const urlOf = (server: Server, host: string) => `http://${host.includes(":") ? `[${host}]` : host}:${(server.address() as AddressInfo).port}`;

/** What a start is told besides the configuration (worker mode, see src/cluster/). */
export interface StartOptions {
  /** Chron verified whole moments ago by the worker mode primary: go on from its head (see buildChron). */
  vouched?: ChronStart;
  /** False: no listener of CLAIIM_METRICS_ADDRESS here (in worker mode the primary serves it, summed over the workers). */
  metricsListener?: boolean;
  /** The other workers of worker mode, which apply this one's changes before they are answered. */
  peers?: Peers;
}

/** Opens the database, builds the core on it and starts it; on failure, closes what it opened. */
async function startCore(config: Config, logger: Logger, options: StartOptions): Promise<{ core: Core; db: Database }> {
  const db = await openDatabase(config.databaseKind, config.databaseUrl, (err) => logger.warn("idle database connection failed", { error: err.message }));
  const stores: Stores = {
    identity: new PrismaIdentityStore(db.prisma),
    policy: new PrismaPolicyStore(db.prisma),
    chron: createChronStore(db),
    approval: new PrismaApprovalStore(db.prisma),
    received: sqlReceivedHeadStore(db),
    replays: prismaReplayStore(db.prisma, db.kind),
    changeNotices: db.kind === "postgresql" ? new PostgresChangeNotices(db.pool.options, logger) : undefined,
    leases: leaseStore(db),
  };
  let core: Core;
  try {
    core = buildCore(config, stores, new OpaCliCompiler(config.opaBin), logger, () => databaseAnswers(db), await openCoreChronKey(config, stores, logger), { vouched: options.vouched, peers: options.peers });
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
  return { core, db };
}

/**
 * The work of a start that must happen once, done once and without serving: Chron verified whole,
 * the signing keys, the bootstrap credential and rego/'s policies created on a new database.
 * The worker mode primary runs it before it forks; its workers then find all of it done.
 */
export async function startOnce(config: Config, logger: Logger): Promise<{ chronStart: ChronStart | null; bootstrapCredentialFile: string | null }> {
  const { core, db } = await startCore(config, logger, {});
  const done = { chronStart: core.chronStartedFrom(), bootstrapCredentialFile: core.bootstrapCredentialFile };
  await core.stop();
  await db.close();
  return done;
}

/** Opens the database, builds and starts the core on it, and listens. */
export async function startClaiim(config: Config, logger: Logger = createLogger(config.logLevel), options: StartOptions = {}): Promise<Claiim> {
  const { core, db } = await startCore(config, logger, options);
  const server = createServer(createHttpApp(core, config, logger));
  const metrics = config.ops.metricsAddress && options.metricsListener !== false ? metricsServer(() => core.metrics.scrape()) : null;
  try {
    await listen(server, config.port, config.host);
    if (metrics && config.ops.metricsAddress) await listen(metrics, config.ops.metricsAddress.port, config.ops.metricsAddress.host);
  } catch (err) {
    server.close();
    await core.stop().catch(() => undefined);
    await db.close().catch(() => undefined);
    throw err;
  }
  const url = urlOf(server, config.host);
  const metricsUrl = metrics && config.ops.metricsAddress ? `${urlOf(metrics, config.ops.metricsAddress.host)}/metrics` : null;
  logger.info("CLAIIM listening", {
    url,
    database: config.databaseKind,
    policy_version: core.engine.active()?.version ?? null,
    ...(metricsUrl ? { metrics: metricsUrl } : {}),
    tracing: core.tracing.enabled ? config.ops.tracing.endpoint : "off",
  });

  const { authenticator: _authenticator, start: _start, stop: _stop, beginStop: _beginStop, ...services } = core;
  return {
    ...services,
    get bootstrapCredentialFile() {
      return core.bootstrapCredentialFile;
    },
    get stopping() {
      return core.stopping;
    },
    url,
    metricsUrl,
    server,
    db,
    logger,
    close: () => stopClaiim(core, [server, ...(metrics ? [metrics] : [])], db, { timeoutMs: config.shutdownTimeoutSeconds * 1000, delayMs: config.shutdownDelaySeconds * 1000 }, logger),
  };
}

/** Settles with the promise's value, or "late" once the deadline (ms since the epoch) has passed. */
function until<T>(promise: Promise<T>, deadlineMs: number): Promise<T | "late"> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), Math.max(0, deadlineMs - Date.now()));
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/**
 * The bounded stop, all of it within `timeoutMs`: readiness answers 503 at once, and for `delayMs`
 * (at most half the bound) CLAIIM goes on serving so that load balancers polling /readyz look
 * elsewhere before the listener closes; then requests in flight, and the Chron records they wait for, get four fifths of the
 * time, after which their connections are cut; then the services stop in the reverse order of their
 * start (replays end, Chron commits what is queued, checkpoints are signed) and the database closes.
 * The last log line says that CLAIIM stopped, and whether it had to give up on something.
 *
 * WARNING: no answer leaves without its record: a request cut at the deadline gets no answer at
 * all, and its decision, if the writer still commits it, is in Chron all the same.
 */
async function stopClaiim(core: Core, servers: Server[], db: Database, bound: { timeoutMs: number; delayMs: number }, logger: Logger): Promise<void> {
  core.beginStop();
  const { timeoutMs } = bound;
  const started = Date.now();
  const deadline = started + timeoutMs;
  const delayMs = Math.min(bound.delayMs, Math.floor(timeoutMs / 2));
  if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
  const [server, ...others] = servers;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  for (const other of others) {
    other.close();
    other.closeAllConnections();
  }
  if ((await until(closed, started + Math.floor(timeoutMs * 0.8))) === "late") {
    logger.warn("requests still in flight at the shutdown deadline; closing their connections", { timeout_ms: timeoutMs });
    server.closeAllConnections();
    await closed;
  }
  const stopped = core.stop().then(() => db.close());
  const outcome = await until(
    stopped.then(
      () => "done" as const,
      (err: Error) => err,
    ),
    deadline,
  );
  if (outcome === "done") {
    logger.info("CLAIIM stopped", { ms: Date.now() - started });
    return;
  }
  const why = outcome === "late" ? `its services had not stopped within ${timeoutMs} ms` : `stopping its services failed: ${outcome.message}`;
  logger.error("CLAIIM stopped uncleanly", { ms: Date.now() - started, reason: why });
  throw new Error(why);
}
