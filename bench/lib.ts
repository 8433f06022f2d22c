// What the benchmarks share: CLAIIM started as its own process on a fresh database, the reference
// agents registered, and autocannon requests for their allowed and denied actions.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import net from "node:net";
import { randomBytes } from "node:crypto";
import pg from "pg";

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const autocannon = require("autocannon") as (opts: Record<string, unknown>) => Promise<AutocannonResult>;

export interface AutocannonResult {
  duration: number;
  requests: { average: number; total: number };
  latency: { p50: number; p90: number; p99: number; max: number; average: number };
  "2xx": number;
  non2xx: number;
  errors: number;
  timeouts: number;
}

export const ROOT = path.resolve(__dirname, "../..");

/** Clock ticks per second of /proc's CPU times (getconf CLK_TCK; 100 on Linux unless told otherwise). */
const TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * CPU seconds (user and system, every thread) used so far by a process and every process below it
 * (worker mode's workers), from /proc; null where there is no /proc. Taken before and after a
 * phase, it gives the CPU per decision: a figure that moves far less with the machine's other load
 * than decisions per second do. A process that ended during the phase is not counted.
 */
export function treeCpuSeconds(pid: number): number | null {
  if (!fs.existsSync(`/proc/${pid}/stat`)) return null;
  const stats = new Map<number, { ppid: number; seconds: number }>();
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // it ended meanwhile
    }
    // The command name (field 2) may hold spaces and parentheses: the fields after its last ")" are fixed.
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    stats.set(Number(entry), { ppid: Number(f[1]), seconds: (Number(f[11]) + Number(f[12])) / TICKS });
  }
  let total = 0;
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop()!;
    total += stats.get(p)?.seconds ?? 0;
    for (const [child, s] of stats) if (s.ppid === p) todo.push(child);
  }
  return total;
}

/** Microseconds of CPU per answered decision between two treeCpuSeconds readings, or null. */
export function cpuPerDecision(before: number | null, after: number | null, answered: number): number | null {
  return before === null || after === null || answered === 0 ? null : ((after - before) * 1e6) / answered;
}

export const AGENTS = [
  { name: "deploy-bot", skill: "deploy", allow: ["deploy", "staging"], deny: ["deploy", "production"] },
  { name: "support-bot", skill: "customer-support", allow: ["draft_response", "ticket/1"], deny: ["send_response", "ticket/1"] },
  { name: "finance-bot", skill: "finance-reporting", allow: ["read_report", "report/q3"], deny: ["execute_payment", "vendor/9"] },
  { name: "hr-bot", skill: "hr-assistant", allow: ["summarize_document", "policy-doc/leave"], deny: ["read_employee_record", "employee/7"] },
  { name: "legal-bot", skill: "legal-analysis", allow: ["analyze_document", "document/nda"], deny: ["disclose_externally", "document/nda"] },
  { name: "review-bot", skill: "code-review", allow: ["comment_pull_request", "repo/api"], deny: ["merge_pull_request", "repo/api"] },
];

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

export async function call(base: string, token: string, method: string, url: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(base + url, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = res.status === 204 ? {} : ((await res.json()) as Record<string, unknown>);
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** A fresh database of this kind: a SQLite file (by startServer), or a new PostgreSQL database on BENCH_PG_URL, dropped at the end. */
export async function freshUrl(kind: "sqlite" | "postgresql", dropAtEnd: (() => Promise<void>)[]): Promise<string | undefined> {
  if (kind === "sqlite") return undefined;
  const base = process.env.BENCH_PG_URL!;
  const name = `claiim_bench_${randomBytes(4).toString("hex")}_${process.pid}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  dropAtEnd.push(async () => {
    const c = new pg.Client({ connectionString: base });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await c.end();
  });
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

export interface BenchServer {
  base: string;
  admin: string;
  dir: string;
  env: NodeJS.ProcessEnv;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** CLAIIM as its own process (one process unless `extraEnv` sets CLAIIM_WORKERS), on a fresh database (SQLite in a temporary folder unless BENCH_DATABASE_URL says otherwise), ready; `root` is the build to run (another commit's, to compare). */
export async function startServer(extraEnv: Record<string, string> = {}, databaseUrl?: string, root = ROOT): Promise<BenchServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "claiim-bench-"));
  const url = databaseUrl ?? `file:${path.join(dir, "claiim.db")}`;
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = { ...process.env, DATABASE_URL: url, PORT: String(port), CLAIIM_DATA_DIR: path.join(dir, "data"), CLAIIM_BUNDLE_DIR: path.join(dir, "bundles"), LOG_LEVEL: "warn", CLAIIM_WORKERS: "1", ...extraEnv };
  execFileSync(path.join(root, "node_modules/.bin/prisma"), ["migrate", "deploy"], { cwd: root, env, stdio: "ignore" });
  const child = spawn(process.execPath, [path.join(root, "dist/src/main.js")], { cwd: root, env, stdio: ["ignore", "ignore", "inherit"] });
  let exited = false;
  child.on("exit", () => (exited = true));
  for (let i = 0; ; i++) {
    if (i > 300 || exited) throw new Error("CLAIIM did not become ready");
    if ((await fetch(`${base}/readyz`).catch(() => null))?.ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const admin = fs.readFileSync(path.join(dir, "data/bootstrap-admin.token"), "utf8").trim();
  return {
    base,
    admin,
    dir,
    env,
    process: child,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    },
  };
}

/** Until the primary says that `workers` processes listen (its gauge, on /metrics of any worker). */
export async function allListening(base: string, admin: string, workers: number): Promise<void> {
  if (workers === 1) return;
  for (let i = 0; i < 600; i++) {
    const res = await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${admin}` } }).catch(() => null);
    if (res?.ok && new RegExp(`^claiim_workers_listening ${workers}$`, "m").test(await res.text())) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${workers} workers did not all listen within 60 s`);
}

/** The reference agents, registered: autocannon requests for each one's allowed and denied action, and their tokens. */
export async function registerAgents(base: string, admin: string, onDecision: (decisionId: string) => void = () => undefined): Promise<{ requests: Record<string, unknown>[]; tokens: Record<string, string> }> {
  await call(base, admin, "POST", "/v1/organizations", { slug: "bench", name: "Bench Corp" });
  await call(base, admin, "POST", "/v1/humans", { organization: "bench", name: "Owner", email: "owner@bench.example" });
  const requests: Record<string, unknown>[] = [];
  const tokens: Record<string, string> = {};
  for (const a of AGENTS) {
    const agent = await call(base, admin, "POST", "/v1/agents", { organization: "bench", name: a.name, owner: "owner@bench.example", skills: [{ name: a.skill, version: "1.0.0" }] });
    const { token } = await call(base, admin, "POST", `/v1/agents/${agent.id}/credentials`, {});
    tokens[a.name] = token as string;
    for (const [action, resource] of [a.allow, a.deny]) {
      requests.push({
        method: "POST",
        path: "/v1/decisions",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ action, resource, purpose: "benchmark", skill: { name: a.skill, version: "1.0.0" } }),
        onResponse: (status: number, body: string) => {
          if (status === 200) onDecision(/"decision_id":"([^"]+)"/.exec(body)![1]);
        },
      });
    }
  }
  return { requests, tokens };
}

/** The decision ids Chron holds, read page by page through the API. */
export async function recordedDecisions(base: string, admin: string): Promise<Set<string>> {
  const recorded = new Set<string>();
  let cursor: string | null = null;
  do {
    const page = (await call(base, admin, "GET", `/v1/chron/records?kind=decision&limit=1000${cursor ? `&cursor=${cursor}` : ""}`)) as { records: { decision_id: string }[]; next_cursor: string | null };
    for (const r of page.records) recorded.add(r.decision_id);
    cursor = page.next_cursor;
  } while (cursor);
  return recorded;
}
