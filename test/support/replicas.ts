import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { startTestServer, type TestServer } from "./claiim";

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
