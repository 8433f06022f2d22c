import fs from "node:fs";
import type { Writable } from "node:stream";
import path from "node:path";
import request from "supertest";
import { databaseKindOf, loadConfig, type Config } from "../../src/config";
import { createLogger } from "../../src/lib/logger";
import { startClaiim, type Claiim } from "../../src/server";
import { freshDatabase, type TestDatabase } from "./databases";
import type { DatabaseKind } from "../../src/db/database";

const ROOT = path.resolve(__dirname, "../..");

export interface TestServer {
  claiim: Claiim;
  config: Config;
  admin: string;
  http: ReturnType<typeof request>;
  /** Stops the server, keeping the database, and starts a new one on it (after `downMs`, if given). */
  restart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** A real CLAIIM: real database, real OPA compiler, real HTTP server on an ephemeral port. */
export interface TestServerOptions {
  env?: Record<string, string>;
  /** Captures the server's logs (at LOG_LEVEL, default "http" when a stream is given). */
  logStream?: Writable;
  /** A database prepared by the test (migrated, perhaps holding what an earlier CLAIIM wrote), and the folder for the server's data. */
  database?: { db: TestDatabase; dir: string };
}

export async function startTestServer(kind: DatabaseKind, options: TestServerOptions = {}): Promise<TestServer> {
  const dir = options.database?.dir ?? fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "srv-"));
  const db: TestDatabase = options.database?.db ?? (await freshDatabase(kind, dir));
  const config = loadConfig(
    {
      PORT: "0",
      DATABASE_URL: db.url,
      CLAIIM_DATA_DIR: path.join(dir, "data"),
      CLAIIM_BUNDLE_DIR: path.join(dir, "bundles"),
      CLAIIM_REGO_DIR: path.join(ROOT, "rego"),
      OPA_BIN: process.env.OPA_BIN ?? path.join(ROOT, ".tools/bin/opa"),
      LOG_LEVEL: options.logStream ? "http" : (process.env.CLAIIM_TEST_LOG_LEVEL ?? "silent"),
      ...options.env,
    },
    ROOT,
  );
  if (databaseKindOf(config.databaseUrl) !== kind) throw new Error("test database kind mismatch");
  const logger = createLogger(config.logLevel, options.logStream);
  let claiim = await startClaiim(config, logger);
  let running = true;
  const admin = fs.readFileSync(claiim.bootstrapCredentialFile!, "utf8").trim();
  const server: TestServer = {
    claiim,
    config,
    admin,
    http: request(claiim.url),
    async restart(downMs = 0) {
      // A start that failed (a tampered chain refused) left nothing running to close.
      if (running) await claiim.close();
      running = false;
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      claiim = await startClaiim({ ...config, port: 0 }, logger);
      running = true;
      server.claiim = claiim;
      server.http = request(claiim.url);
    },
    async stop() {
      if (running) await claiim.close();
      await db.drop();
    },
  };
  return server;
}
