// How fast a change made through one CLAIIM process reaches another on the same database: two
// real processes (A and B), an agent suspended and reactivated through A, and B's decisions probed
// until they follow. The figure is from A's acknowledgement to B's first decision by the change.
// BENCH_DATABASE_URL=postgresql://… runs it on PostgreSQL (LISTEN/NOTIFY), else SQLite (polled).
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { call, freePort, ROOT, startServer, type BenchServer } from "./lib";

const ROUNDS = Number(process.env.BENCH_PROPAGATION_ROUNDS ?? 100);

async function startReplica(a: BenchServer): Promise<{ base: string; stop(): Promise<void> }> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const dir = fs.mkdtempSync(path.join(a.dir, "replica-"));
  const env = { ...a.env, PORT: String(port), CLAIIM_DATA_DIR: dir, CLAIIM_BUNDLE_DIR: path.join(dir, "bundles"), CLAIIM_CHRON_SIGNING_KEY_FILE: path.join(a.dir, "data/chron-signing-key.pem") };
  const child = spawn(process.execPath, [path.join(ROOT, "dist/src/main.js")], { cwd: ROOT, env, stdio: ["ignore", "ignore", "inherit"] });
  for (let i = 0; ; i++) {
    if (i > 300 || child.exitCode !== null) throw new Error("the second CLAIIM did not become ready");
    if ((await fetch(`${base}/readyz`).catch(() => null))?.ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    },
  };
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

async function main(): Promise<void> {
  const a = await startServer({}, process.env.BENCH_DATABASE_URL);
  const b = await startReplica(a);
  try {
    await call(a.base, a.admin, "POST", "/v1/organizations", { slug: "bench", name: "Bench Corp" });
    await call(a.base, a.admin, "POST", "/v1/humans", { organization: "bench", name: "Owner", email: "owner@bench.example" });
    const agent = await call(a.base, a.admin, "POST", "/v1/agents", { organization: "bench", name: "deploy-bot", owner: "owner@bench.example", skills: [{ name: "deploy", version: "1.0.0" }] });
    const { token } = await call(a.base, a.admin, "POST", `/v1/agents/${agent.id}/credentials`, {});
    const decideOnB = async () => {
      const res = await fetch(`${b.base}/v1/decisions`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token as string}`, "Content-Type": "application/json" },
        body: JSON.stringify({ action: "deploy", resource: "staging", purpose: "benchmark", skill: { name: "deploy", version: "1.0.0" } }),
      });
      return res.status === 200 ? ((await res.json()) as { decision: string }).decision : `status ${res.status}`;
    };
    const until = async (want: string) => {
      const since = performance.now();
      while ((await decideOnB()) !== want) if (performance.now() - since > 5000) throw new Error(`B did not answer ${want} within 5 s`);
      return performance.now() - since;
    };
    await until("allow");
    // What one decision on B costs when nothing changes: the floor under the figures below.
    const plain: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      await decideOnB();
      plain.push(performance.now() - t);
    }
    const lags: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      await call(a.base, a.admin, "POST", `/v1/agents/${agent.id}/suspend`, { reason: "bench" });
      lags.push(await until("deny"));
      await call(a.base, a.admin, "POST", `/v1/agents/${agent.id}/reactivate`, { reason: "bench" });
      lags.push(await until("allow"));
    }
    const sorted = lags.sort((x, y) => x - y);
    const db = process.env.BENCH_DATABASE_URL ? "PostgreSQL" : "SQLite";
    console.log(`propagation (${db}, two processes): ${lags.length} changes through A, B decided by them after p50 ${pct(sorted, 50).toFixed(1)} ms, p99 ${pct(sorted, 99).toFixed(1)} ms, max ${sorted[sorted.length - 1].toFixed(1)} ms (one decision on B, nothing changing: p50 ${pct(plain.sort((x, y) => x - y), 50).toFixed(1)} ms)`);
  } finally {
    await b.stop();
    await a.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
