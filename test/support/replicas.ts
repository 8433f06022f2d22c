import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { startTestServer, type TestServer } from "./claiim";
import { until } from "./until";

/**
 * A second CLAIIM process on the database of `primary`: its own data folder, the same Chron key
 * file (processes of one deployment share it), and the primary's administrator credential.
 * Stopping it leaves the database alone. `databaseUrl` reaches the same database another way
 * (through a DatabaseCut, say).
 */
export async function startReplica(primary: TestServer, options: { env?: Record<string, string>; databaseUrl?: string } = {}): Promise<TestServer> {
  const dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "replica-"));
  return startTestServer(primary.config.databaseKind, {
    database: { db: { url: options.databaseUrl ?? primary.config.databaseUrl, drop: async () => undefined }, dir },
    admin: primary.admin,
    env: { CLAIIM_CHRON_SIGNING_KEY_FILE: primary.config.chronTrust.keys.keyFile, ...options.env },
  });
}

/**
 * A TCP relay to PostgreSQL that a test can cut: `cut()` drops every connection and refuses new
 * ones (the database is unreachable for whoever goes through it), `mend()` lets them through again.
 */
export class DatabaseCut {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private open = true;

  private constructor(
    private readonly target: { host: string; port: number },
    readonly port: number,
    server: net.Server,
  ) {
    this.server = server;
  }

  static async around(url: string): Promise<{ cut: DatabaseCut; url: string }> {
    const parsed = new URL(url);
    const target = { host: parsed.hostname, port: Number(parsed.port || 5432) };
    let relay: DatabaseCut | null = null;
    const server = net.createServer((client) => relay!.accept(client));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    relay = new DatabaseCut(target, port, server);
    parsed.hostname = "127.0.0.1";
    parsed.port = String(port);
    return { cut: relay, url: parsed.toString() };
  }

  private accept(client: net.Socket): void {
    if (!this.open) {
      client.destroy();
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => {
        this.sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  cut(): void {
    this.open = false;
    for (const s of this.sockets) s.destroy();
  }

  mend(): void {
    this.open = true;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const ROOT = path.resolve(__dirname, "../..");

/** Another CLAIIM process on a test server's database, as a replica runs: its own port and data folder (so its own witness log), the same Chron key file. */
export interface Replica {
  base: string;
  child: ChildProcess;
  dataDir: string;
  /** SIGTERM, and waits for the exit. */
  stop(): Promise<void>;
  /** kill -9: no shutdown work of any kind. */
  kill(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/** A replica of a running test server as a process of its own (kill -9 reaches it), or a process on a database of the test's own (`databaseUrl`, with the Chron key file every process shares). */
export async function spawnReplica(s: TestServer | { databaseUrl: string; keyFile: string }, env: Record<string, string> = {}): Promise<Replica> {
  const on = "config" in s ? { databaseUrl: s.config.databaseUrl, keyFile: s.config.chronTrust.keys.keyFile, regoDir: s.config.regoDir, opaBin: s.config.opaBin } : { ...s, regoDir: path.join(ROOT, "rego"), opaBin: process.env.OPA_BIN ?? path.join(ROOT, ".tools/bin/opa") };
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "replica-"));
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "src/main.ts")], {
    cwd: ROOT,
    env: {
      ...process.env,
      DATABASE_URL: on.databaseUrl,
      // A replica shares the Chron key (it signs and tags what it writes), and has its own witness log.
      CLAIIM_CHRON_SIGNING_KEY_FILE: on.keyFile,
      PORT: String(port),
      CLAIIM_DATA_DIR: path.join(dir, "data"),
      CLAIIM_BUNDLE_DIR: path.join(dir, "bundles"),
      CLAIIM_REGO_DIR: on.regoDir,
      OPA_BIN: on.opaBin,
      LOG_LEVEL: "error",
      // One process, as these tests mean (worker mode, its own tests: test/e2e/worker-mode.test.ts).
      CLAIIM_WORKERS: "1",
      ...env,
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.on("exit", () => (exited = true));
  const base = `http://127.0.0.1:${port}`;
  await until(
    "the replica to be ready",
    async () => {
      if (exited) throw new Error("the replica exited");
      return (await fetch(`${base}/readyz`).catch(() => null))?.ok;
    },
    60000,
  );
  const end = async (signal: NodeJS.Signals) => {
    if (!exited) child.kill(signal);
    await exit;
  };
  return { base, child, dataDir: path.join(dir, "data"), stop: () => end("SIGTERM"), kill: () => end("SIGKILL") };
}
