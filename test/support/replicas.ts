import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import type { TestServer } from "./claiim";
import { until } from "./until";

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

/** A replica of a running test server, or a process on a database of the test's own (`databaseUrl`, with the Chron key file every process shares). */
export async function startReplica(s: TestServer | { databaseUrl: string; keyFile: string }, env: Record<string, string> = {}): Promise<Replica> {
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
