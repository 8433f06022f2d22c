/*
 * Benchmark of Chron at audit scale (make bench): fills a fresh SQLite Chron with BENCH_CHRON_RECORDS
 * decisions (1,000,000 by default) through the real writer and checkpointer, then measures the time
 * and peak memory to export them all as NDJSON, to verify the chain in the database, and to verify
 * the export offline. BENCH_DATABASE_URL=postgresql://… runs it on PostgreSQL.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { once } from "node:events";
import { databaseKindOf } from "../src/config";
import { openDatabase } from "../src/db/database";
import { createLogger } from "../src/lib/logger";
import { createChronStore } from "../src/server";
import { ChronWriter } from "../src/chron/chron-writer";
import { ChronService } from "../src/chron/chron-service";
import { ChronVerifier } from "../src/chron/verification";
import { Checkpointer } from "../src/chron/checkpoints";
import { ChronExporter } from "../src/chron/export";
import { verifyExport } from "../src/chron/export-verifier";
import type { DecisionContent } from "../src/chron/record";
import { LocalKeySigner, publishChronKey } from "../src/chron/signer";
import { WitnessLog } from "../src/chron/witness";
import { measureConsoleQueries } from "./console-queries";
import { jwksKeys } from "../src/chron/checkpoint-jws";
import { ndjsonItems } from "../src/chron/export-items";

const ROOT = path.resolve(__dirname, "../..");
const RECORDS = Number(process.env.BENCH_CHRON_RECORDS ?? 1_000_000);
const BATCH = 1000;

/** Runs `work`, sampling the process's memory; returns seconds taken and peak RSS and heap above the start. */
async function measure<T>(work: () => Promise<T>): Promise<{ result: T; seconds: number; rssMiB: number; heapMiB: number }> {
  global.gc?.();
  const base = process.memoryUsage();
  let rss = base.rss;
  let heap = base.heapUsed;
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss);
    heap = Math.max(heap, m.heapUsed);
  }, 20);
  const started = process.hrtime.bigint();
  const result = await work();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  clearInterval(timer);
  const m = process.memoryUsage();
  rss = Math.max(rss, m.rss);
  heap = Math.max(heap, m.heapUsed);
  return { result, seconds, rssMiB: (rss - base.rss) / 2 ** 20, heapMiB: (heap - base.heapUsed) / 2 ** 20 };
}

function decision(i: number): DecisionContent {
  const allow = i % 2 === 0;
  return {
    kind: "decision",
    decision_id: randomUUID(),
    timestamp: new Date(Date.UTC(2026, 10, 1) + i * 100).toISOString(),
    path: "claiim/decision",
    organization: { id: "org-1", slug: "acme" },
    agent: { id: `agent-${i % 50}`, name: `bot-${i % 50}`, status: "active" },
    accountable_human: { id: "human-1", name: "Alice", email: "alice@acme.example", status: "active" },
    on_behalf_of: null,
    requested_by: { credential_id: "cred-1" },
    action: "deploy",
    resource: allow ? "staging" : "production",
    purpose: "benchmark",
    skill: { name: "deploy", version: "1.2.0" },
    decision: allow ? "allow" : "deny",
    reasons: [allow ? 'skill "deploy" permits "deploy" on "staging"' : "deploying to production requires a change approved by a human"],
    policy: { version: 1, revision: "1-sha256:bench", digest: "sha256:bench" },
    bundles: { claiim: { revision: "1-sha256:bench" } },
    input: { agent: { id: `agent-${i % 50}` }, request: { action: "deploy", resource: allow ? "staging" : "production" } },
  };
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "claiim-chron-bench-"));
  const url = process.env.BENCH_DATABASE_URL ?? `file:${path.join(dir, "chron.db")}`;
  execFileSync(path.join(ROOT, "node_modules/.bin/prisma"), ["migrate", "deploy"], { cwd: ROOT, env: { ...process.env, DATABASE_URL: url }, stdio: "ignore" });
  const db = await openDatabase(databaseKindOf(url), url);
  const logger = createLogger("warn");
  const store = createChronStore(db);
  const keys = new LocalKeySigner(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "pem", type: "pkcs8" }) as string);
  const writer = new ChronWriter(store, BATCH, logger, keys);
  const witness = { log: new WitnessLog(path.join(dir, "witness")), remote: null };
  const checkpointer = new Checkpointer(store, keys, { everyRecords: 1000, everySeconds: 3600 }, logger, witness);
  await checkpointer.start();
  writer.onCommit((rows) => checkpointer.committed(rows));
  const chron = new ChronService(store);
  const verifier = new ChronVerifier(store, writer, { keys: checkpointer.keys(), signer: keys, witnessFile: witness.log.file });
  const exporter = new ChronExporter(store, verifier, checkpointer, (c, e) => writer.commit(c, e), 10_000, logger, undefined, {
    writerHead: () => writer.knownHead(),
    lastWitnessed: () => checkpointer.lastWitnessed(),
    signer: keys,
  });

  console.log(`Chron benchmark: ${RECORDS.toLocaleString("en")} decision records on ${url.split(":")[0]}, checkpoint every 1,000`);
  const fill = await measure(async () => {
    for (let i = 0; i < RECORDS; i += BATCH) {
      await writer.commit(Array.from({ length: Math.min(BATCH, RECORDS - i) }, (_, j) => decision(i + j)));
    }
    await checkpointer.idle();
  });
  console.log(`fill      ${fill.seconds.toFixed(1)} s (${Math.round(RECORDS / fill.seconds).toLocaleString("en")} records/s, batches of ${BATCH})`);

  await measureConsoleQueries(chron, RECORDS, { fromMs: Date.parse(decision(0).timestamp), toMs: Date.parse(decision(RECORDS - 1).timestamp) });

  const file = path.join(dir, "export.ndjson");
  const exported = await measure(async () => {
    const { header, body } = await exporter.prepare({}, {}, "ndjson", { type: "system", id: "bench", name: "bench" }, {});
    const out = fs.createWriteStream(file);
    for await (const chunk of body) if (!out.write(chunk)) await once(out, "drain");
    await new Promise<void>((resolve) => out.end(() => resolve()));
    return header.count;
  });
  const size = fs.statSync(file).size / 2 ** 20;
  console.log(`export    ${exported.seconds.toFixed(1)} s for ${exported.result.toLocaleString("en")} records (${size.toFixed(0)} MiB NDJSON); peak memory +${exported.rssMiB.toFixed(0)} MiB RSS, +${exported.heapMiB.toFixed(0)} MiB heap`);

  const verified = await measure(() => verifier.verify());
  console.log(
    `verify    ${verified.seconds.toFixed(1)} s in the database: ${verified.result.valid ? "valid" : "BROKEN"}, ${verified.result.checked.toLocaleString("en")} records, ${verified.result.checkpoints.checked} checkpoints; peak memory +${verified.rssMiB.toFixed(0)} MiB RSS, +${verified.heapMiB.toFixed(0)} MiB heap`,
  );

  const offline = await measure(() => verifyExport(ndjsonItems(file), jwksKeys({ keys: keys.publicKeys().map(publishChronKey) })));
  console.log(
    `offline   ${offline.seconds.toFixed(1)} s for claiim-verify's check of the export: ${offline.result.ok ? "OK" : `FAILED ${JSON.stringify(offline.result.problem)}`}; peak memory +${offline.rssMiB.toFixed(0)} MiB RSS, +${offline.heapMiB.toFixed(0)} MiB heap`,
  );
  await checkpointer.stop();
  await writer.close();
  await db.close();
  fs.rmSync(dir, { recursive: true, force: true });
  if (!verified.result.valid || !offline.result.ok) process.exitCode = 1;
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
