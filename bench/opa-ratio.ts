/*
 * CLAIIM against `opa run --server` (make bench), on the same machine in the same run, the load
 * generator included. Both evaluate the same Rego and data (rego/), on the same input documents:
 * the ones CLAIIM recorded in Chron for the reference agents' requests (half allowed, half denied
 * or awaiting approval). OPA runs with console decision logs on, as a server that logs its
 * decisions would; CLAIIM answers only once each decision is durable in Chron. The two take turns,
 * BENCH_OPA_ROUNDS times (3) for BENCH_SECONDS (15) each at BENCH_CONNECTIONS (64); the figure is
 * the ratio of their median throughputs. Every decision CLAIIM acknowledged must be in Chron, the
 * chain must verify, and OPA must agree with CLAIIM on every input. CLAIIM runs in worker mode with
 * one serving process per core (CLAIIM_WORKERS overrides), as it does by default.
 */
import { spawn } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { allListening, autocannon, call, cpuPerDecision, freePort, recordedDecisions, registerAgents, ROOT, startServer, treeCpuSeconds, type AutocannonResult } from "./lib";

const ROUNDS = Number(process.env.BENCH_OPA_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const WORKERS = Number(process.env.CLAIIM_WORKERS ?? os.availableParallelism());
const OPA = process.env.OPA_BIN ?? path.join(ROOT, ".tools/bin/opa");

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Recorded {
  decision_id: string;
  agent: { name: string };
  action: string;
  resource: string;
  decision: string;
  policy_decision?: string;
  input: unknown;
}

async function main(): Promise<void> {
  // CLAIIM as deployed by default: worker mode, one serving process per core.
  const claiim = await startServer({ CLAIIM_WORKERS: String(WORKERS) });
  const opaPort = await freePort();
  const opa = spawn(OPA, ["run", "--server", "--addr", `127.0.0.1:${opaPort}`, "--log-level", "error", "--set", "decision_logs.console=true", path.join(ROOT, "rego")], { stdio: "ignore" });
  const opaBase = `http://127.0.0.1:${opaPort}`;
  try {
    const acknowledged = new Set<string>();
    const { requests } = await registerAgents(claiim.base, claiim.admin, (id) => acknowledged.add(id));
    // One decision per request, to learn the input document CLAIIM evaluates for it.
    const firsts: string[] = [];
    for (const r of requests) {
      const res = await fetch(claiim.base + (r.path as string), { method: "POST", headers: r.headers as Record<string, string>, body: r.body as string });
      const body = (await res.json()) as { decision_id: string };
      if (!res.ok) throw new Error(`POST /v1/decisions: ${res.status} ${JSON.stringify(body)}`);
      firsts.push(body.decision_id);
      acknowledged.add(body.decision_id);
    }
    const page = (await call(claiim.base, claiim.admin, "GET", "/v1/chron/records?kind=decision&order=desc&limit=1000")) as { records: Recorded[] };
    const byId = new Map(page.records.map((r) => [r.decision_id, r]));
    const inputs = firsts.map((id) => byId.get(id)!);
    for (;;) {
      if ((await fetch(`${opaBase}/health`).catch(() => null))?.ok) break;
      if (opa.exitCode !== null) throw new Error("opa run --server exited");
      await new Promise((r) => setTimeout(r, 100));
    }
    // Same inputs, same answers: otherwise the comparison would be of different work.
    for (const r of inputs) {
      const res = (await (await fetch(`${opaBase}/v1/data/claiim/decision`, { method: "POST", body: JSON.stringify({ input: r.input }) })).json()) as { result?: { allow?: boolean } };
      const claiimAllowed = (r.policy_decision ?? r.decision) === "allow";
      if (res.result?.allow !== claiimAllowed) throw new Error(`OPA and CLAIIM disagree on ${r.agent.name} ${r.action} ${r.resource}`);
    }
    await allListening(claiim.base, claiim.admin, WORKERS);
    const opaRequests = inputs.map((r) => ({ method: "POST", path: "/v1/data/claiim/decision", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ input: r.input }) }));

    console.log(`CLAIIM against opa run --server: ${ROUNDS} alternating rounds of ${SECONDS} s, ${CONNECTIONS} connections, ${inputs.length} inputs (half allowed), SQLite, CLAIIM_WORKERS=${WORKERS}, OPA with console decision logs`);
    const runs: { claiim: AutocannonResult[]; opa: AutocannonResult[] } = { claiim: [], opa: [] };
    // CPU per decision of each server (all its processes and threads), round by round.
    const cpu: { claiim: number[]; opa: number[] } = { claiim: [], opa: [] };
    const measured = async (side: "claiim" | "opa", pid: number, run: () => Promise<AutocannonResult>) => {
      const before = treeCpuSeconds(pid);
      const r = await run();
      const us = cpuPerDecision(before, treeCpuSeconds(pid), r["2xx"]);
      runs[side].push(r);
      if (us !== null) cpu[side].push(us);
    };
    for (let i = 0; i < ROUNDS; i++) {
      await measured("claiim", claiim.process.pid!, () => autocannon({ url: claiim.base, connections: CONNECTIONS, duration: SECONDS, requests }));
      await measured("opa", opa.pid!, () => autocannon({ url: opaBase, connections: CONNECTIONS, duration: SECONDS, requests: opaRequests }));
    }
    await new Promise((r) => setTimeout(r, 500));
    const recorded = await recordedDecisions(claiim.base, claiim.admin);
    const verify = (await call(claiim.base, claiim.admin, "GET", "/v1/chron/verify")) as { valid: boolean; checked: number };
    const missing = [...acknowledged].filter((id) => !recorded.has(id)).length;

    const row = (label: string, rs: AutocannonResult[]) => {
      const rates = rs.map((r) => r["2xx"] / r.duration);
      console.log(`${label.padEnd(34)} ${median(rates).toFixed(0).padStart(7)}/s  (rounds: ${rates.map((x) => x.toFixed(0)).join(", ")}), p50 ${median(rs.map((r) => r.latency.p50))} ms, p99 ${median(rs.map((r) => r.latency.p99))} ms, non-2xx ${rs.reduce((n, r) => n + r.non2xx + r.errors + r.timeouts, 0)}`);
      return median(rates);
    };
    const ours = row("CLAIIM (durable decisions)", runs.claiim);
    const theirs = row("opa run --server (decision logs)", runs.opa);
    console.log(`ratio CLAIIM / OPA                 ${(ours / theirs).toFixed(2)} (goal: at least 1.0)`);
    if (cpu.claiim.length && cpu.opa.length) {
      const [c, o] = [median(cpu.claiim), median(cpu.opa)];
      console.log(`CPU per decision                   CLAIIM ${c.toFixed(0)} µs (rounds: ${cpu.claiim.map((x) => x.toFixed(0)).join(", ")}), OPA ${o.toFixed(0)} µs (rounds: ${cpu.opa.map((x) => x.toFixed(0)).join(", ")}): OPA / CLAIIM ${(o / c).toFixed(2)}`);
    }
    const ok = missing === 0 && verify.valid;
    console.log(`check                              ${ok ? "OK" : "FAILED"}: ${acknowledged.size} acknowledged decisions, ${missing} missing from Chron, chain ${verify.valid ? "valid" : "BROKEN"} (${verify.checked} records)`);
    if (!ok) process.exitCode = 1;
  } finally {
    opa.kill("SIGTERM");
    await claiim.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
