/*
 * Several writers, one chain (make bench). Every CLAIIM process appends its Chron batches under the
 * database's write lock (PostgreSQL's advisory transaction lock, SQLite's BEGIN IMMEDIATE), reading
 * the chain's head inside that transaction. This measures, in one run, on fresh databases:
 *
 *  - what the lock costs one process: decisions/s of this build against an earlier one (the last
 *    commit before the lock, built by scripts/bench-before.sh and named by BENCH_BEFORE_ROOT), in
 *    alternating rounds under the same load; skipped when BENCH_BEFORE_ROOT is not set;
 *  - what 1, 2 and 3 processes on one database give together, the load split between them.
 *
 * First it times the append path alone (see appendPath). Every phase checks that every
 * acknowledged decision is in Chron and that the chain verifies.
 * BENCH_WRITERS_SECONDS (10), BENCH_WRITERS_ROUNDS (2), BENCH_CONNECTIONS (64), BENCH_PG_URL (a
 * PostgreSQL server to create databases on; without it, SQLite only), BENCH_WRITERS_APPEND_ONLY=1
 * (the append path alone).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ChronStore } from "../src/chron/chron-store";
import { ChronWriter } from "../src/chron/chron-writer";
import { newEvent, type ChronRow } from "../src/chron/record";
import { LocalKeySigner } from "../src/chron/signer";
import { openDatabase } from "../src/db/database";
import { createLogger } from "../src/lib/logger";
import { createChronStore } from "../src/server";
import { autocannon, call, freePort, freshUrl, registerAgents, ROOT, startServer, type AutocannonResult, type BenchServer } from "./lib";

const SECONDS = Number(process.env.BENCH_WRITERS_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_WRITERS_ROUNDS ?? 2);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const BEFORE = process.env.BENCH_BEFORE_ROOT;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Another process of the same build on the first one's database and Chron key, with its own data folder. */
async function startReplica(first: BenchServer, root: string): Promise<{ base: string; child: ChildProcess }> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(first.dir, "replica-"));
  const env = { ...first.env, PORT: String(port), CLAIIM_DATA_DIR: path.join(dir, "data"), CLAIIM_BUNDLE_DIR: path.join(dir, "bundles"), CLAIIM_CHRON_SIGNING_KEY_FILE: path.join(first.dir, "data/chron-signing-key.pem") };
  const child = spawn(process.execPath, [path.join(root, "dist/src/main.js")], { cwd: root, env, stdio: ["ignore", "ignore", "inherit"] });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (i > 300 || child.exitCode !== null) throw new Error("a replica did not become ready");
    if ((await fetch(`${base}/readyz`).catch(() => null))?.ok) return { base, child };
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Phase {
  label: string;
  result: { rate: number; p50: number; p99: number; bad: number };
  check: string;
}

/** `processes` processes of the build at `root` on one fresh database, the load split between them; checked at the end. */
async function phase(label: string, kind: "sqlite" | "postgresql", root: string, processes: number, drops: (() => Promise<void>)[]): Promise<Phase> {
  const first = await startServer({}, await freshUrl(kind, drops), root);
  const replicas: ChildProcess[] = [];
  try {
    const acknowledged = new Set<string>();
    const { requests } = await registerAgents(first.base, first.admin, (id) => acknowledged.add(id));
    const bases = [first.base];
    for (let i = 1; i < processes; i++) {
      const r = await startReplica(first, root);
      replicas.push(r.child);
      bases.push(r.base);
    }
    const results: AutocannonResult[] = await Promise.all(bases.map((url) => autocannon({ url, connections: Math.floor(CONNECTIONS / processes), duration: SECONDS, requests })));
    await new Promise((r) => setTimeout(r, 500));
    const recorded = new Set<string>();
    let cursor: string | null = null;
    do {
      const page = (await call(first.base, first.admin, "GET", `/v1/chron/records?kind=decision&limit=1000${cursor ? `&cursor=${cursor}` : ""}`)) as { records: { decision_id: string }[]; next_cursor: string | null };
      for (const r of page.records) recorded.add(r.decision_id);
      cursor = page.next_cursor;
    } while (cursor);
    const verify = (await call(first.base, first.admin, "GET", "/v1/chron/verify")) as { valid: boolean; checked: number };
    const missing = [...acknowledged].filter((id) => !recorded.has(id)).length;
    const bad = results.reduce((n, r) => n + r.non2xx + r.errors + r.timeouts, 0);
    const ok = missing === 0 && verify.valid && bad === 0;
    if (!ok) process.exitCode = 1;
    return {
      label,
      result: { rate: results.reduce((n, r) => n + r.requests.average, 0), p50: Math.max(...results.map((r) => r.latency.p50)), p99: Math.max(...results.map((r) => r.latency.p99)), bad },
      check: `${ok ? "OK" : "FAILED"}: ${acknowledged.size} acknowledged, ${missing} missing, chain ${verify.valid ? "valid" : "BROKEN"} (${verify.checked} records)`,
    };
  } finally {
    for (const child of replicas) child.kill("SIGTERM");
    await first.stop();
  }
}

function print(phases: Phase[]): void {
  console.log(`${"phase".padEnd(40)} ${"decisions/s".padStart(11)} ${"p50 ms".padStart(7)} ${"p99 ms".padStart(7)}  check`);
  for (const p of phases) console.log(`${p.label.padEnd(40)} ${p.result.rate.toFixed(0).padStart(11)} ${String(p.result.p50).padStart(7)} ${String(p.result.p99).padStart(7)}  ${p.check}`);
}

/**
 * The append path alone, in this process, without HTTP: the Chron writer group-committing events
 * from 64 concurrent callers through the store's locked append, against the same writer through an
 * append as it was before the lock (the head kept in memory, one INSERT per batch, no lock taken and
 * no head read), in alternating rounds on one database. Records per second of each, median.
 */
async function appendPath(kind: "sqlite" | "postgresql", drops: (() => Promise<void>)[]): Promise<{ locked: number; plain: number; batch: number }> {
  const url = (await freshUrl(kind, drops)) ?? `file:${path.join(fs.mkdtempSync(path.join(os.tmpdir(), "claiim-append-")), "chron.db")}`;
  execFileSync(path.join(ROOT, "node_modules/.bin/prisma"), ["migrate", "deploy"], { cwd: ROOT, env: { ...process.env, DATABASE_URL: url }, stdio: "ignore" });
  const db = await openDatabase(kind, url);
  const logger = createLogger("silent");
  const signer = new LocalKeySigner(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "pem", type: "pkcs8" }) as string);
  const locked = createChronStore(db);
  const columns = "seq, id, kind, ts_ms, org_id, agent_id, owner_id, action, decision, policy_version, content, prev_hash, hash, tag";
  const valuesOf = (r: ChronRow) => [r.seq, r.id, r.kind, r.tsMs, r.orgId, r.agentId, r.ownerId, r.action, r.decision, r.policyVersion, r.content, r.prevHash, r.hash, r.tag];
  const insertOne = db.kind === "sqlite" ? db.sqlite.prepare(`INSERT INTO chron_records (${columns}) VALUES (${Array(14).fill("?").join(", ")})`) : null;
  const insertAll = db.kind === "sqlite" ? db.sqlite.transaction((rows: ChronRow[]) => rows.forEach((r) => insertOne!.run(...valuesOf(r)))) : null;
  let last: ChronRow | null = null;
  const plain: ChronStore = Object.assign(Object.create(locked) as ChronStore, {
    async append(build: (head: ChronRow | null) => ChronRow[]): Promise<ChronRow[]> {
      const rows = build(last);
      if (insertAll) insertAll(rows);
      else if (db.kind === "postgresql") {
        const tuples = rows.map((_, r) => `(${Array.from({ length: 14 }, (_, c) => `$${r * 14 + c + 1}`).join(", ")})`);
        await db.pool.query(`INSERT INTO chron_records (${columns}) VALUES ${tuples.join(", ")}`, rows.flatMap(valuesOf));
      }
      last = rows[rows.length - 1];
      return rows;
    },
  });
  const event = (i: number) =>
    newEvent({ type: "bench.appended", actor: { type: "system", id: "bench", name: "bench" }, subject: { type: "bench", id: String(i), name: `record ${i}` }, before: { n: i - 1, padding: "x".repeat(600) }, after: { n: i } });
  const run = async (store: ChronStore, ms: number): Promise<{ rate: number; batch: number }> => {
    last = await locked.latest({}, 1).then((r) => r[0] ?? null);
    const writer = new ChronWriter(store, 256, logger, signer);
    writer.startAt(last ? { seq: last.seq, hash: last.hash } : null);
    let n = 0;
    const deadline = Date.now() + ms;
    await Promise.all(Array.from({ length: 64 }, async () => {
      while (Date.now() < deadline) await writer.append(event(n++));
    }));
    const { committed, batches } = writer.stats();
    return { rate: committed / (ms / 1000), batch: committed / batches };
  };
  const rates = { locked: [] as number[], plain: [] as number[], batch: [] as number[] };
  try {
    for (let round = 0; round < 3; round++) {
      rates.plain.push((await run(plain, 3000)).rate);
      const l = await run(locked, 3000);
      rates.locked.push(l.rate);
      rates.batch.push(l.batch);
    }
  } finally {
    await db.close();
  }
  return { locked: median(rates.locked), plain: median(rates.plain), batch: median(rates.batch) };
}

async function main(): Promise<void> {
  const kinds: ("sqlite" | "postgresql")[] = process.env.BENCH_PG_URL ? ["sqlite", "postgresql"] : ["sqlite"];
  const drops: (() => Promise<void>)[] = [];
  try {
    for (const kind of kinds) {
      console.log(`\nSeveral writers, one chain, on ${kind}: ${CONNECTIONS} connections, ${SECONDS}s per phase`);
      const path_ = await appendPath(kind, drops);
      console.log(
        `append path alone (writer and store, no HTTP, 64 callers, 3 × 3 s each): locked ${path_.locked.toFixed(0)} records/s, unlocked as before ${path_.plain.toFixed(0)} records/s (${(100 * (1 - path_.locked / path_.plain)).toFixed(1)} % cost; ${path_.batch.toFixed(0)} records per batch)`,
      );
      const phases: Phase[] = [];
      if (process.env.BENCH_WRITERS_APPEND_ONLY) continue;
      if (BEFORE) {
        const before: number[] = [];
        const after: number[] = [];
        for (let round = 1; round <= ROUNDS; round++) {
          const b = await phase(`1 process, before the lock (round ${round})`, kind, BEFORE, 1, drops);
          const a = await phase(`1 process, locked append (round ${round})`, kind, ROOT, 1, drops);
          phases.push(b, a);
          before.push(b.result.rate);
          after.push(a.result.rate);
        }
        print(phases.splice(0));
        console.log(`the lock's cost to one process: ${(100 * (1 - median(after) / median(before))).toFixed(1)} % (median ${median(after).toFixed(0)}/s against ${median(before).toFixed(0)}/s)`);
      }
      for (const n of [1, 2, 3]) phases.push(await phase(`${n} process${n > 1 ? "es" : ""}, one chain`, kind, ROOT, n, drops));
      print(phases);
    }
  } finally {
    for (const drop of drops) await drop().catch(() => undefined);
  }
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
