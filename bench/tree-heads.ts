/*
 * The cost of signing a tree head at least every second (make bench). Two CLAIIMs side by side on
 * fresh SQLite databases: one with CLAIIM's defaults (a tree head signed every second while records
 * are written, and every 1,000 records, each appended to the witness log and fsynced), the other
 * signing only every 1,000 records. The same load (64 connections, the reference agents) goes to
 * each in turn, interleaved, BENCH_TREE_HEAD_ROUNDS times (3) for BENCH_TREE_HEAD_SECONDS (8); the
 * ratio of their median decisions/s, measured in this one run, is what the heads cost. The goal is
 * under 5 %. Both chains must verify at the end. Because a shared machine makes such ratios noisy,
 * it also times one head on its own, in this process: sign it, store its checkpoint in SQLite,
 * prove it consistent with the last one (1,000 records later) and append it to a witness log with
 * fsync; at one head a second, that time over a second bounds what the heads take from one core.
 */
import { execFileSync } from "node:child_process";
import { createHash, generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { openDatabase } from "../src/db/database";
import { consistencyProof, MerkleFrontier } from "../src/chron/merkle";
import { LocalKeySigner, signJws } from "../src/chron/signer";
import { WitnessLog } from "../src/chron/witness";
import { createChronStore } from "../src/server";
import { createLogger } from "../src/lib/logger";
import { autocannon, call, registerAgents, ROOT, startServer, type BenchServer } from "./lib";

const ROUNDS = Number(process.env.BENCH_TREE_HEAD_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_TREE_HEAD_SECONDS ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** What one tree head costs on its own: wall time and CPU time per head, averaged over `n`. */
async function oneHead(n = 200): Promise<{ wallMs: number; cpuMs: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "claiim-heads-"));
  const url = `file:${path.join(dir, "chron.db")}`;
  execFileSync(path.join(ROOT, "node_modules/.bin/prisma"), ["migrate", "deploy"], { cwd: ROOT, env: { ...process.env, DATABASE_URL: url }, stdio: "ignore" });
  const db = await openDatabase("sqlite", url);
  const store = createChronStore(db);
  const signer = new LocalKeySigner(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "pem", type: "pkcs8" }) as string);
  const log = new WitnessLog(dir);
  await log.open(createLogger("silent"));
  const frontier = new MerkleFrontier();
  const leaf = (i: number) => createHash("sha256").update(String(i)).digest("hex");
  let wall = 0;
  let cpu = 0;
  for (let h = 1; h <= n; h++) {
    const before = MerkleFrontier.parse(frontier.serialize());
    const added = Array.from({ length: 1000 }, (_, i) => leaf(h * 1000 + i));
    for (const x of added) frontier.append(x);
    const t = performance.now();
    const c = process.cpuUsage();
    const claims = { sequence: frontier.size, hash: added[999], timestamp: new Date().toISOString(), count: frontier.size, root: frontier.root() };
    const jws = await signJws(signer, claims);
    await store.insertCheckpoint({ seq: frontier.size, hash: claims.hash, tsMs: Date.now(), count: frontier.size, kid: signer.kid, jws, frontier: frontier.serialize() });
    const proof = consistencyProof(before, added);
    await log.append({ chron_witness: 1, tree_size: frontier.size, root: claims.root, hash: claims.hash, timestamp: claims.timestamp, kid: signer.kid, jws, consistency: { from_size: before.size, from_root: before.root(), proof } });
    wall += performance.now() - t;
    const used = process.cpuUsage(c);
    cpu += (used.user + used.system) / 1000;
  }
  await log.close();
  await db.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return { wallMs: wall / n, cpuMs: cpu / n };
}

async function main(): Promise<void> {
  const variants: { label: string; server: BenchServer; requests: Record<string, unknown>[]; rates: number[]; heads: number }[] = [];
  try {
    for (const [label, env] of [
      ["a head every second", {}],
      ["a head every 1,000 records", { CLAIIM_CHECKPOINT_EVERY_SECONDS: "86400" }],
    ] as const) {
      const server = await startServer(env);
      variants.push({ label, server, requests: (await registerAgents(server.base, server.admin)).requests, rates: [], heads: 0 });
    }
    console.log(`Tree heads: ${ROUNDS} interleaved rounds of ${SECONDS} s per variant, ${CONNECTIONS} connections, SQLite`);
    const witnessed = (v: (typeof variants)[number]) => {
      const file = path.join(v.server.dir, "data/witness/chron-witness.log");
      return fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter(Boolean).length : 0;
    };
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which goes first, so that neither always runs on a warmer (or busier) machine.
      for (const v of round % 2 ? [...variants].reverse() : variants) {
        const before = witnessed(v);
        const r = await autocannon({ url: v.server.base, connections: CONNECTIONS, duration: SECONDS, requests: v.requests });
        if (r.non2xx + r.errors + r.timeouts > 0) throw new Error(`${v.label}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`);
        v.rates.push(r.requests.average);
        v.heads += witnessed(v) - before;
      }
    }
    console.log("");
    for (const v of variants) {
      const verify = (await call(v.server.base, v.server.admin, "GET", "/v1/chron/verify")) as { valid: boolean; checked: number; witness?: { heads_checked: number } };
      console.log(
        `${v.label.padEnd(28)} ${median(v.rates).toFixed(0).padStart(6)} decisions/s (rounds: ${v.rates.map((x) => x.toFixed(0)).join(", ")}); ${(v.heads / (ROUNDS * SECONDS)).toFixed(1)} heads/s witnessed; chain ${verify.valid ? "valid" : "BROKEN"}, ${verify.checked} records, ${verify.witness?.heads_checked ?? 0} witnessed heads matched`,
      );
      if (!verify.valid) process.exitCode = 1;
    }
    const cost = 1 - median(variants[0].rates) / median(variants[1].rates);
    console.log(`cost of a head every second: ${(cost * 100).toFixed(1)} % of decisions/s (goal: under 5 %)`);
    const head = await oneHead();
    console.log(
      `one head on its own: ${head.wallMs.toFixed(2)} ms (sign, store, prove from 1,000 records back, append and fsync), ${head.cpuMs.toFixed(2)} ms of CPU: at one head a second, ${(head.cpuMs / 10).toFixed(2)} % of one core`,
    );
  } finally {
    for (const v of variants) await v.server.stop();
  }
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
