// CLAIIM as its own process, started as `make run` does (node on src/main.ts, here through tsx),
// for what only a real process shows: signals, the shutdown's bound and its last log line, and
// libraries that load Node modules dynamically (the OTLP exporter), which jest's module sandbox refuses.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import request from "supertest";
import { freePort } from "./browser";
import { freshDatabase, type TestDatabase } from "./databases";
import { until } from "./until";
import { openDatabase, type Database, type DatabaseKind } from "../../src/db/database";

const ROOT = path.resolve(__dirname, "../..");

/**
 * What every node the tests start inherits besides what they set: under `make test-lts`, the hook
 * that loads native modules built for that Node.js (scripts/lts-modules.cjs).
 */
export function nodeEnv(): Record<string, string> {
  const keep: Record<string, string> = {};
  for (const name of ["NODE_OPTIONS", "CLAIIM_LTS_MODULES"]) if (process.env[name]) keep[name] = process.env[name]!;
  return keep;
}

export interface ClaiimProcess {
  url: string;
  http: ReturnType<typeof request>;
  /** The bootstrap administrator credential. */
  admin: string;
  /** The process's database, opened by the test (it outlives the process). */
  db: Database;
  child: ChildProcess;
  /** The JSON log lines written so far (LOG_LEVEL info unless `env` says otherwise). */
  logs(): Record<string, unknown>[];
  /** The JSON log lines written to standard error so far (levels warn and error). */
  errors(): Record<string, unknown>[];
  /** Resolves when the process has exited, with how. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Ends the process (SIGTERM unless told), waits for its exit, closes and drops the database. */
  stop(): Promise<void>;
}

/**
 * `database`: a database made for the test (dropped at stop), else a fresh one; env.DATABASE_URL,
 * when given, is what CLAIIM connects with (another role), while the test reads with the database's own URL.
 */
export async function startClaiimProcess(kind: DatabaseKind, env: Record<string, string> = {}, given?: TestDatabase): Promise<ClaiimProcess> {
  const dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "proc-"));
  const database: TestDatabase = given ?? (await freshDatabase(kind, dir));
  const port = await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "src/main.ts")], {
    cwd: ROOT,
    env: {
      ...nodeEnv(),
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DATABASE_URL: database.url,
      HOST: "127.0.0.1",
      PORT: String(port),
      CLAIIM_DATA_DIR: path.join(dir, "data"),
      CLAIIM_BUNDLE_DIR: path.join(dir, "bundles"),
      CLAIIM_REGO_DIR: path.join(ROOT, "rego"),
      OPA_BIN: process.env.OPA_BIN ?? path.join(ROOT, ".tools/bin/opa"),
      LOG_LEVEL: "info",
      // One process, as these tests mean (worker mode, its own tests: test/e2e/worker-mode.test.ts).
      CLAIIM_WORKERS: "1",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: Record<string, unknown>[] = [];
  let stderr = "";
  let rest = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    for (const line of parts) if (line.startsWith("{")) lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  const errors: Record<string, unknown>[] = [];
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
    const parts = stderr.split("\n");
    for (const line of parts.slice(errors.length, -1)) errors.push(line.startsWith("{") ? (JSON.parse(line) as Record<string, unknown>) : { text: line });
  });
  let done: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve((done = { code, signal }))),
  );
  const url = `http://127.0.0.1:${port}`;
  try {
    await until(
      "the CLAIIM process to be ready",
      async () => {
        if (done) throw new Error(`the CLAIIM process exited (${JSON.stringify(done)}): ${stderr}`);
        return (await fetch(`${url}/readyz`).catch(() => null))?.ok;
      },
      90_000,
    );
  } catch (err) {
    child.kill("SIGKILL");
    await database.drop();
    throw err;
  }
  const admin = fs.readFileSync(path.join(dir, "data", "bootstrap-admin.token"), "utf8").trim();
  const db = await openDatabase(kind, database.url);
  return {
    url,
    http: request(url),
    admin,
    db,
    child,
    logs: () => lines,
    errors: () => errors,
    exited,
    async stop() {
      if (!done) {
        child.kill("SIGTERM");
        await exited;
      }
      await db.close();
      await database.drop();
    },
  };
}
