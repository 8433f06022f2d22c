/*
 * Worker mode (make bench): CLAIIM_WORKERS=1 (one process, no cluster) against CLAIIM_WORKERS=2
 * (a primary and two serving processes on one port, one chain), in alternating phases in one
 * run, on SQLite and, with BENCH_PG_URL, on PostgreSQL; the load generator (autocannon, in this
 * process) on the same machine. Each phase starts CLAIIM afresh on a new database, registers the
 * reference agents, waits until every worker listens, warms up for a second, then sends
 * BENCH_CONNECTIONS (64) connections of half-allowed, half-denied decisions for BENCH_SECONDS (15).
 * Every acknowledged decision must be in Chron and the chain must verify, in every phase.
 * BENCH_WORKERS_ROUNDS (2) rounds of the two; the figures are medians. The load average is printed
 * with them: the machine may be shared.
 */
import os from "node:os";
import { allListening, autocannon, call, cpuPerDecision, freshUrl, recordedDecisions, registerAgents, startServer, treeCpuSeconds } from "./lib";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const ROUNDS = Number(process.env.BENCH_WORKERS_ROUNDS ?? 2);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const GOALS = { sqlite: { rate: 8000, p99: 15 }, postgresql: { rate: 5000, p99: null } } as const;

/** The middle figure, or the mean of the middle two. */
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

interface Phase {
  workers: number;
  rate: number;
  p50: number;
  p99: number;
  /** Microseconds of CPU per decision, CLAIIM's processes together (null without /proc). */
  cpuUs: number | null;
  bad: number;
  load: number;
  ok: boolean;
  check: string;
}

async function phase(kind: "sqlite" | "postgresql", workers: number, drops: (() => Promise<void>)[]): Promise<Phase> {
  const server = await startServer({ CLAIIM_WORKERS: String(workers) }, await freshUrl(kind, drops));
  try {
    const acknowledged = new Set<string>();
    const { requests } = await registerAgents(server.base, server.admin, (id) => acknowledged.add(id));
    await allListening(server.base, server.admin, workers);
    await autocannon({ url: server.base, connections: CONNECTIONS, duration: 1, requests });
    const cpuBefore = treeCpuSeconds(server.process.pid!);
    const r = await autocannon({ url: server.base, connections: CONNECTIONS, duration: SECONDS, requests });
    const cpuUs = cpuPerDecision(cpuBefore, treeCpuSeconds(server.process.pid!), r["2xx"]);
    const load = os.loadavg()[0];
    const recorded = await recordedDecisions(server.base, server.admin);
    const verify = (await call(server.base, server.admin, "GET", "/v1/chron/verify")) as { valid: boolean; checked: number };
    const missing = [...acknowledged].filter((id) => !recorded.has(id)).length;
    const bad = r.non2xx + r.errors + r.timeouts;
    const ok = missing === 0 && verify.valid && bad === 0;
    return {
      workers,
      rate: r["2xx"] / r.duration,
      p50: r.latency.p50,
      p99: r.latency.p99,
      cpuUs,
      bad,
      load,
      ok,
      check: `${ok ? "OK" : "FAILED"}: ${acknowledged.size} acknowledged, ${missing} missing from Chron, chain ${verify.valid ? "valid" : "BROKEN"} (${verify.checked} records)`,
    };
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  const kinds: ("sqlite" | "postgresql")[] = process.env.BENCH_PG_URL ? ["sqlite", "postgresql"] : ["sqlite"];
  const drops: (() => Promise<void>)[] = [];
  try {
    for (const kind of kinds) {
      console.log(`\nWorker mode on ${kind}: CLAIIM_WORKERS=1 and =2 alternating, ${ROUNDS} rounds, ${CONNECTIONS} connections, ${SECONDS} s each, load generator on the same ${os.availableParallelism()} cores`);
      console.log(`${"phase".padEnd(24)} ${"decisions/s".padStart(11)} ${"p50 ms".padStart(7)} ${"p99 ms".padStart(7)} ${"CPU µs".padStart(7)} ${"load".padStart(5)}  check`);
      const phases: Phase[] = [];
      for (let round = 1; round <= ROUNDS; round++) {
        for (const workers of [1, 2]) {
          const p = await phase(kind, workers, drops);
          phases.push(p);
          console.log(`${`workers=${workers} (round ${round})`.padEnd(24)} ${p.rate.toFixed(0).padStart(11)} ${String(p.p50).padStart(7)} ${String(p.p99).padStart(7)} ${(p.cpuUs === null ? "-" : p.cpuUs.toFixed(0)).padStart(7)} ${p.load.toFixed(2).padStart(5)}  ${p.check}`);
          if (!p.ok) process.exitCode = 1;
        }
      }
      const of = (workers: number) => phases.filter((p) => p.workers === workers);
      const goal = GOALS[kind];
      for (const workers of [1, 2]) {
        const ps = of(workers);
        const rate = median(ps.map((p) => p.rate));
        const p99 = median(ps.map((p) => p.p99));
        const met = rate >= goal.rate && (goal.p99 === null || p99 <= goal.p99);
        const cpus = ps.map((p) => p.cpuUs).filter((c): c is number => c !== null);
        console.log(
          `median workers=${workers}: ${rate.toFixed(0)}/s, p50 ${median(ps.map((p) => p.p50))} ms, p99 ${p99} ms${cpus.length ? `, ${median(cpus).toFixed(0)} µs of CPU per decision` : ""}  (goal: at least ${goal.rate.toLocaleString("en")}/s${goal.p99 === null ? "" : ` with p99 at most ${goal.p99} ms`}: ${met ? "met" : "not met"})`,
        );
      }
      console.log(`ratio workers=2 / workers=1: ${(median(of(2).map((p) => p.rate)) / median(of(1).map((p) => p.rate))).toFixed(2)}; load average (1 min) over the phases ${Math.min(...phases.map((p) => p.load)).toFixed(2)}..${Math.max(...phases.map((p) => p.load)).toFixed(2)}`);
    }
  } finally {
    for (const drop of drops) await drop().catch(() => undefined);
  }
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
