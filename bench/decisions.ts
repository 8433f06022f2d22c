/*
 * Benchmark of the decision endpoint (make bench). Starts CLAIIM as its own process on a fresh
 * database, registers the reference agents, drives POST /v1/decisions with autocannon at 64
 * connections for a fixed time with a mix of allowed and denied actions, then checks that every
 * acknowledged decision is in Chron and that the chain verifies.
 *
 * BENCH_SECONDS (default 15), BENCH_CONNECTIONS (64), BENCH_DATABASE_URL (default: SQLite in a
 * temporary folder; a postgresql:// URL benchmarks PostgreSQL).
 */
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import net from "node:net";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon = require("autocannon") as (opts: Record<string, unknown>) => Promise<AutocannonResult>;

interface AutocannonResult {
  duration: number;
  requests: { average: number; total: number };
  latency: { p50: number; p90: number; p99: number; max: number; average: number };
  "2xx": number;
  non2xx: number;
  errors: number;
  timeouts: number;
}

const ROOT = path.resolve(__dirname, "../..");
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);

const AGENTS = [
  { name: "deploy-bot", skill: "deploy", allow: ["deploy", "staging"], deny: ["deploy", "production"] },
  { name: "support-bot", skill: "customer-support", allow: ["draft_response", "ticket/1"], deny: ["send_response", "ticket/1"] },
  { name: "finance-bot", skill: "finance-reporting", allow: ["read_report", "report/q3"], deny: ["execute_payment", "vendor/9"] },
  { name: "hr-bot", skill: "hr-assistant", allow: ["summarize_document", "policy-doc/leave"], deny: ["read_employee_record", "employee/7"] },
  { name: "legal-bot", skill: "legal-analysis", allow: ["analyze_document", "document/nda"], deny: ["disclose_externally", "document/nda"] },
  { name: "review-bot", skill: "code-review", allow: ["comment_pull_request", "repo/api"], deny: ["merge_pull_request", "repo/api"] },
];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

async function call(base: string, token: string, method: string, url: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(base + url, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "claiim-bench-"));
  const databaseUrl = process.env.BENCH_DATABASE_URL ?? `file:${path.join(dir, "claiim.db")}`;
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port), CLAIIM_DATA_DIR: path.join(dir, "data"), CLAIIM_BUNDLE_DIR: path.join(dir, "bundles"), LOG_LEVEL: "warn" };
  execFileSync(path.join(ROOT, "node_modules/.bin/prisma"), ["migrate", "deploy"], { cwd: ROOT, env, stdio: "ignore" });
  const server = spawn(process.execPath, [path.join(ROOT, "dist/src/main.js")], { cwd: ROOT, env, stdio: ["ignore", "ignore", "inherit"] });
  let exited = false;
  server.on("exit", () => (exited = true));
  try {
    for (let i = 0; ; i++) {
      if (i > 300 || exited) throw new Error("CLAIIM did not become ready");
      if ((await fetch(`${base}/readyz`).catch(() => null))?.ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const admin = fs.readFileSync(path.join(dir, "data/bootstrap-admin.token"), "utf8").trim();
    await call(base, admin, "POST", "/v1/organizations", { slug: "bench", name: "Bench Corp" });
    await call(base, admin, "POST", "/v1/humans", { organization: "bench", name: "Owner", email: "owner@bench.example" });
    const requests: Record<string, unknown>[] = [];
    const acknowledged = new Set<string>();
    for (const a of AGENTS) {
      const agent = await call(base, admin, "POST", "/v1/agents", { organization: "bench", name: a.name, owner: "owner@bench.example", skills: [{ name: a.skill, version: "1.0.0" }] });
      const { token } = await call(base, admin, "POST", `/v1/agents/${agent.id}/credentials`, {});
      for (const [action, resource] of [a.allow, a.deny]) {
        requests.push({
          method: "POST",
          path: "/v1/decisions",
          headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
          body: JSON.stringify({ action, resource, purpose: "benchmark", skill: { name: a.skill, version: "1.0.0" } }),
          onResponse: (status: number, body: string) => {
            if (status === 200) acknowledged.add(/"decision_id":"([^"]+)"/.exec(body)![1]);
          },
        });
      }
    }

    console.log(`CLAIIM decision benchmark: ${CONNECTIONS} connections, ${SECONDS}s, ${requests.length / 2} agents, half allowed and half denied, on ${databaseUrl.split(":")[0]}`);
    const result = await autocannon({ url: base, connections: CONNECTIONS, duration: SECONDS, requests });

    // Decisions the server answered after the client stopped listening are recorded but not acknowledged.
    await new Promise((r) => setTimeout(r, 500));
    const recorded = new Set<string>();
    let cursor: string | null = null;
    do {
      const page = (await call(base, admin, "GET", `/v1/chron/records?limit=1000${cursor ? `&cursor=${cursor}` : ""}`)) as { records: { decision_id: string }[]; next_cursor: string | null };
      for (const r of page.records) recorded.add(r.decision_id);
      cursor = page.next_cursor;
    } while (cursor);
    const verify = (await call(base, admin, "GET", "/v1/chron/verify")) as { valid: boolean; checked: number };
    const missing = [...acknowledged].filter((id) => !recorded.has(id)).length;

    console.log("");
    console.log(`decisions/s (mean)      ${result.requests.average.toFixed(0)}`);
    console.log(`decisions acknowledged  ${acknowledged.size} (2xx ${result["2xx"]}, non-2xx ${result.non2xx}, errors ${result.errors}, timeouts ${result.timeouts})`);
    console.log(`latency p50 / p90 / p99 ${result.latency.p50} / ${result.latency.p90} / ${result.latency.p99} ms (max ${result.latency.max} ms)`);
    console.log(`chron records           ${recorded.size} (${recorded.size - acknowledged.size} answered after the client stopped)`);
    console.log(`chron chain             ${verify.valid ? "valid" : "BROKEN"}, ${verify.checked} records verified`);
    const ok = missing === 0 && verify.valid && result.non2xx === 0 && acknowledged.size === result["2xx"];
    console.log(`check                   ${ok ? "OK" : "FAILED"}: every acknowledged decision is in Chron (${missing} missing)`);
    if (!ok) process.exitCode = 1;
  } finally {
    server.kill("SIGTERM");
  }
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
