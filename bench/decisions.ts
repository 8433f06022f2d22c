/*
 * Benchmark of the decision endpoint (make bench). Starts CLAIIM as its own process on a fresh
 * database, registers the reference agents, drives POST /v1/decisions with autocannon at 64
 * connections for a fixed time with a mix of allowed and denied actions (production deploys and
 * customer replies are approval_required, answered with the approval already open); then again with a shadow
 * version evaluated beside the active one, and again while a replay of that version runs over
 * everything recorded so far. It checks that every acknowledged decision is in Chron and that the
 * chain verifies.
 *
 * BENCH_SECONDS (default 15), BENCH_CONNECTIONS (64), BENCH_DATABASE_URL (default: SQLite in a
 * temporary folder; a postgresql:// URL benchmarks PostgreSQL).
 */
import { randomUUID } from "node:crypto";
import { spawn } from "node:child_process";
import path from "node:path";
import { autocannon, ROOT, startServer, registerAgents, call, recordedDecisions, type AutocannonResult } from "./lib";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);

async function main(): Promise<void> {
  const databaseUrl = process.env.BENCH_DATABASE_URL ?? "file:";
  const started = await startServer({}, process.env.BENCH_DATABASE_URL);
  const { base, admin, env } = started;
  const server = started.process;
  try {
    const acknowledged = new Set<string>();
    const { requests, tokens } = await registerAgents(base, admin, (id) => acknowledged.add(id));

    console.log(`CLAIIM decision benchmark: ${CONNECTIONS} connections, ${SECONDS}s per phase, ${requests.length / 2} agents, half allowed and half denied or awaiting approval, on ${databaseUrl.split(":")[0]}`);
    const phases: [string, AutocannonResult][] = [];
    const load = async (label: string, list = requests) => {
      phases.push([label, await autocannon({ url: base, connections: CONNECTIONS, duration: SECONDS, requests: list })]);
    };
    const benchStart = new Date(Date.now() - 60_000).toISOString();
    await load("decisions");
    // As the SDKs send them: a new Idempotency-Key on every request, each remembered in memory.
    const keyed = requests.map((r) => ({ ...r, setupRequest: (req: { headers: Record<string, string> }) => ({ ...req, headers: { ...req.headers, "Idempotency-Key": `"${randomUUID()}"` } }) }));
    await load("with Idempotency-Key", keyed);

    // A candidate version that freezes staging deploys: shadowed, then replayed, while decisions go on.
    const files = ((await call(base, admin, "GET", "/v1/policies/1")) as { files: Record<string, string> }).files;
    const data = JSON.parse(files["claiim/data.json"]);
    (data.skills.deploy.forbids ??= []).push({ action: "deploy", resources: ["staging"], reason: "staging is frozen" });
    const candidate = Object.fromEntries(Object.entries({ ...files, "claiim/data.json": JSON.stringify(data) }).filter(([name]) => !name.endsWith("_test.rego")));
    const { version } = (await call(base, admin, "POST", "/v1/policies", { files: candidate, message: "bench candidate" })) as { version: number };
    await call(base, admin, "PUT", "/v1/policies/shadow", { version });
    await load("with a shadow version");
    await call(base, admin, "DELETE", "/v1/policies/shadow");
    const shadow = (await call(base, admin, "GET", `/v1/policies/shadow/report?version=${version}&from=${encodeURIComponent(benchStart)}&samples=0`)) as { evaluated: number; disagreements: number };

    const replay = (await call(base, admin, "POST", `/v1/policies/${version}/replay`, { from: benchStart, max_records: 10 })) as { id: string; progress: { total: number } };
    const replayStarted = Date.now();
    await load("during a replay");
    let job: { state: string; finished_at: string | null; progress: { processed: number }; allow_to_deny: { count: number } };
    for (;;) {
      job = (await call(base, admin, "GET", `/v1/policies/replays/${replay.id}`)) as typeof job;
      if (job.state !== "running") break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const replaySeconds = (Date.parse(job.finished_at!) - replayStarted) / 1000;
    const waitFor = async (id: string) => {
      for (;;) {
        const j = (await call(base, admin, "GET", `/v1/policies/replays/${id}`)) as typeof job;
        if (j.state !== "running") return j;
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    // The same replay on an idle server: how fast it goes when nothing needs the event loop.
    const idle = (await call(base, admin, "POST", `/v1/policies/${version}/replay`, { from: benchStart, to: job.finished_at, max_records: 10 })) as { id: string };
    const idleStarted = Date.now();
    const idleJob = await waitFor(idle.id);
    const idleSeconds = (Date.parse(idleJob.finished_at!) - idleStarted) / 1000;

    // Human approval, one round after another on the idle server: ask (a new approval), approve, use it once.
    const bridge = ((await call(base, admin, "POST", "/v1/api-keys", { name: "bench bridge", role: "approver", organization: "bench" })) as { secret: string }).secret;
    const ROUNDS = 200;
    const steps = { ask: 0, approve: 0, use: 0 };
    const approvalStarted = Date.now();
    for (let i = 0; i < ROUNDS; i++) {
      const request = { action: "deploy", resource: "production", purpose: `approval round ${i}`, skill: { name: "deploy", version: "1.0.0" } };
      let t = performance.now();
      const asked = (await call(base, tokens["deploy-bot"], "POST", "/v1/decisions", request)) as { decision_id: string; approval: { id: string } };
      steps.ask += performance.now() - t;
      t = performance.now();
      await call(base, bridge, "POST", `/v1/approvals/${asked.approval.id}/approve`, { reason: "bench", on_behalf_of: "owner@bench.example" });
      steps.approve += performance.now() - t;
      t = performance.now();
      const used = (await call(base, tokens["deploy-bot"], "POST", "/v1/decisions", { ...request, approval_id: asked.approval.id })) as { decision_id: string; allow: boolean };
      steps.use += performance.now() - t;
      if (!used.allow) throw new Error(`approval round ${i} was not allowed`);
      acknowledged.add(asked.decision_id).add(used.decision_id);
    }
    const approvalSeconds = (Date.now() - approvalStarted) / 1000;

    // Decisions the server answered after the client stopped listening are recorded but not acknowledged.
    await new Promise((r) => setTimeout(r, 500));
    const recorded = await recordedDecisions(base, admin);
    const verify = (await call(base, admin, "GET", "/v1/chron/verify")) as { valid: boolean; checked: number };
    const missing = [...acknowledged].filter((id) => !recorded.has(id)).length;

    console.log("");
    console.log(`${"phase".padEnd(24)} ${"decisions/s".padStart(11)} ${"p50 ms".padStart(7)} ${"p90 ms".padStart(7)} ${"p99 ms".padStart(7)} ${"max ms".padStart(7)}  non-2xx`);
    for (const [label, r] of phases) {
      console.log(`${label.padEnd(24)} ${r.requests.average.toFixed(0).padStart(11)} ${String(r.latency.p50).padStart(7)} ${String(r.latency.p90).padStart(7)} ${String(r.latency.p99).padStart(7)} ${String(r.latency.max).padStart(7)}  ${r.non2xx + r.errors + r.timeouts}`);
    }
    console.log("");
    console.log(`shadow                  ${shadow.evaluated} decisions also evaluated under version ${version}, ${shadow.disagreements} disagreements recorded`);
    console.log(`replay                  ${job.progress.processed} recorded decisions in ${replaySeconds.toFixed(1)} s, started under load (${SECONDS} s), ${job.allow_to_deny.count} allow→deny, state ${job.state}`);
    console.log(`replay, idle server     ${idleJob.progress.processed} recorded decisions in ${idleSeconds.toFixed(1)} s (${(idleJob.progress.processed / idleSeconds).toFixed(0)}/s), state ${idleJob.state}`);
    console.log(
      `approvals, idle server  ${ROUNDS} rounds (ask, approve, use) in ${approvalSeconds.toFixed(1)} s: ask ${(steps.ask / ROUNDS).toFixed(1)} ms, approve ${(steps.approve / ROUNDS).toFixed(1)} ms, use ${(steps.use / ROUNDS).toFixed(1)} ms on average`,
    );
    const ok2xx = phases.reduce((n, [, r]) => n + r["2xx"], 0);
    const bad = phases.reduce((n, [, r]) => n + r.non2xx, 0);
    console.log(`decisions acknowledged  ${acknowledged.size} (2xx ${ok2xx}, non-2xx ${bad})`);
    console.log(`chron records           ${recorded.size} decisions (${recorded.size - acknowledged.size} answered after the client stopped)`);
    console.log(`chron chain             ${verify.valid ? "valid" : "BROKEN"}, ${verify.checked} records verified`);
    const ok = missing === 0 && verify.valid && bad === 0 && acknowledged.size === ok2xx + 2 * ROUNDS && job.state === "done" && idleJob.state === "done";
    console.log(`check                   ${ok ? "OK" : "FAILED"}: every acknowledged decision is in Chron (${missing} missing), the replay finished`);
    if (!ok) process.exitCode = 1;

    // A restart refills the idempotency index from Chron: how long that takes with this many keys.
    server.kill("SIGTERM");
    await new Promise((r) => server.once("exit", r));
    const again = spawn(process.execPath, [path.join(ROOT, "dist/src/main.js")], { cwd: ROOT, env: { ...env, LOG_LEVEL: "info" }, stdio: ["ignore", "pipe", "inherit"] });
    try {
      const line = await new Promise<Record<string, unknown>>((resolve, reject) => {
        let out = "";
        again.stdout!.on("data", (chunk: Buffer) => {
          out += chunk.toString();
          const m = /^(.*"idempotency keys reloaded from Chron".*)\n/m.exec(out);
          if (m) resolve(JSON.parse(m[1]));
        });
        again.once("exit", () => reject(new Error("CLAIIM stopped before reloading its idempotency keys")));
      });
      console.log(`idempotency keys        ${line.keys} reloaded from Chron at start-up in ${line.ms} ms`);
    } finally {
      again.kill("SIGTERM");
    }
  } finally {
    if (server.exitCode === null) server.kill("SIGTERM");
  }
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
