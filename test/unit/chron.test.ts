import { Writable } from "node:stream";
import { ChronWriter } from "../../src/chron/chron-writer";
import { ApprovalStateConflict } from "../../src/approvals/approval-store";
import { ChronService } from "../../src/chron/chron-service";
import { ChronVerifier } from "../../src/chron/verification";
import { FakeChronStore } from "../support/fakes/chron-store";
import { scanRecords } from "../../src/chron/chron-store";
import { LiveWork } from "../../src/lib/pacer";
import { GENESIS_HASH, recordHash, seal, type DecisionContent } from "../../src/chron/record";
import { canonicalize } from "../../src/lib/canonical";
import { createLogger } from "../../src/lib/logger";
import { Checkpointer } from "../../src/chron/checkpoints";
import { ChronExporter } from "../../src/chron/export";
import { verifyExport } from "../../src/chron/export-verifier";
import { LocalKeySigner, lookupIn, publishChronKey } from "../../src/chron/signer";
import { ChronBrokenError, StoredTree } from "../../src/chron/stored-tree";
import { MerkleFrontier } from "../../src/chron/merkle";
import { generateKeyPairSync } from "node:crypto";
import { jwksKeys } from "../../src/chron/checkpoint-jws";
import { decisionContent } from "../support/decision-content";

function newSigner(): LocalKeySigner {
  return new LocalKeySigner(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "pem", type: "pkcs8" }) as string);
}

const logger = createLogger("silent");

function content(n: number, decision: "allow" | "deny" = "allow"): DecisionContent {
  return decisionContent(n, { agent: { id: `a-${n % 3}`, name: "bot", status: "active" }, accountable_human: { id: "h-1", name: "Alice", email: "a@x", status: "active" }, purpose: "p", decision, reasons: [] });
}

describe("ChronWriter (group commit)", () => {
  test("appends of one turn share one transaction, chained in order from genesis", async () => {
    const store = new FakeChronStore();
    const writer = new ChronWriter(store, 100, logger);
    const rows = await Promise.all([1, 2, 3, 4, 5].map((n) => writer.append(content(n))));
    expect(store.appendCalls).toBe(1);
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(rows[0].prevHash).toBe(GENESIS_HASH);
    rows.slice(1).forEach((r, i) => expect(r.prevHash).toBe(rows[i].hash));
    expect(rows[2].hash).toBe(recordHash(content(3), 3, rows[1].hash));
    expect(writer.stats()).toEqual({ committed: 5, batches: 1, queued: 0 });
  });

  test("a caller's promise settles only after its record's commit", async () => {
    const store = new FakeChronStore();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const original = store.append.bind(store);
    store.append = async (rows) => {
      await gate;
      return original(rows);
    };
    const writer = new ChronWriter(store, 100, logger);
    let settled = false;
    const p = writer.append(content(1)).then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    expect(store.rows).toHaveLength(0);
    release();
    await p;
    expect(settled).toBe(true);
    expect(store.rows).toHaveLength(1);
  });

  test("appends that arrive during a commit form the next batch; maxBatch bounds a batch", async () => {
    const store = new FakeChronStore();
    const writer = new ChronWriter(store, 2, logger);
    const all = await Promise.all([1, 2, 3, 4, 5].map((n) => writer.append(content(n))));
    expect(all.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(store.appendCalls).toBe(3);
  });

  test("a database that cannot be reached fails the whole batch, writes nothing, and the chain resumes without a gap", async () => {
    const store = new FakeChronStore();
    const writer = new ChronWriter(store, 100, logger);
    await writer.append(content(1));
    store.failNext = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    const failed = await Promise.allSettled([writer.append(content(2)), writer.append(content(3))]);
    expect(failed.map((f) => f.status)).toEqual(["rejected", "rejected"]);
    expect(store.appendCalls).toBe(2);
    expect(store.rows).toHaveLength(1);
    const next = await writer.append(content(4));
    expect(next.seq).toBe(2);
    expect(next.prevHash).toBe(store.rows[0].hash);
  });

  test("a record the database refuses fails alone: the others of its batch commit, in order, without a gap", async () => {
    const store = new FakeChronStore();
    const writer = new ChronWriter(store, 100, logger);
    store.refuses = (row) => row.content.includes('"poison"');
    const poison = { ...content(3), purpose: "poison" };
    const settled = await Promise.allSettled([1, 2, 3, 4, 5].map((n) => writer.append(n === 3 ? poison : content(n))));
    expect(settled.map((s) => s.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled"]);
    expect(store.rows.map((r) => r.id)).toEqual(["d-1", "d-2", "d-4", "d-5"]);
    expect(store.rows.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    expect(await new ChronVerifier(store, writer, { keys: () => undefined }).verify()).toMatchObject({ valid: true, checked: 4 });
  });

  test("a record whose columns could not be stored as they are is refused before it joins a batch", async () => {
    const store = new FakeChronStore();
    const writer = new ChronWriter(store, 100, logger);
    const settled = await Promise.allSettled([writer.append(content(1)), writer.append({ ...content(2), action: "deploy\ud800" }), writer.append({ ...content(3), action: "de\u0000ploy" }), writer.append(content(4))]);
    expect(settled.map((s) => s.status)).toEqual(["fulfilled", "rejected", "rejected", "fulfilled"]);
    expect(store.appendCalls).toBe(1);
    expect(store.rows.map((r) => r.id)).toEqual(["d-1", "d-4"]);
  });

  test("when another writer moved the head, the batch is re-chained on the new head", async () => {
    const store = new FakeChronStore();
    const writer = new ChronWriter(store, 100, logger);
    await writer.append(content(1));
    const other = seal([content(2)], { seq: 1, hash: store.rows[0].hash });
    await store.append(() => other);
    const row = await writer.append(content(3));
    expect(row.seq).toBe(3);
    expect(row.prevHash).toBe(other[0].hash);
    expect(await new ChronVerifier(store, writer, { keys: () => undefined }).verify()).toMatchObject({ valid: true, checked: 3 });
  });

  test("a change its own effect refuses is the caller's answer: no error logged, the writer stays healthy", async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const store = new FakeChronStore();
    const writer = new ChronWriter(store, 100, createLogger("debug", sink));
    const lost = writer.commit([content(1)], async () => {
      throw new ApprovalStateConflict("approval a-1 is no longer pending");
    });
    await expect(lost).rejects.toBeInstanceOf(ApprovalStateConflict);
    expect(writer.health().failing).toBeNull();
    expect(lines.filter((l) => /"level":"error"/.test(l))).toEqual([]);
    // A failure that is Chron's own still counts as one.
    await expect(writer.commit([content(2)], async () => { throw new Error("disk full"); })).rejects.toThrow("disk full");
    expect(writer.health().failing).toMatchObject({ message: "disk full" });
    expect(lines.some((l) => /chron commit failed/.test(l))).toBe(true);
    expect(store.rows).toEqual([]);
  });

  test("close() commits what is queued and then refuses", async () => {
    const store = new FakeChronStore();
    const writer = new ChronWriter(store, 100, logger);
    const pending = writer.append(content(1));
    await writer.close();
    await expect(pending).resolves.toMatchObject({ seq: 1 });
    await expect(writer.append(content(2))).rejects.toThrow(/closed/);
  });
});

describe("scanRecords", () => {
  test("reads a time window along the chain, page by page, exactly: a record stamped out of order is kept or left by its time", async () => {
    const store = new FakeChronStore();
    const writer = new ChronWriter(store, 100, logger);
    // Seconds 0..9, with second 2 committed after second 7.
    for (const n of [0, 1, 3, 4, 5, 6, 7, 2, 8, 9]) await writer.append(content(n));
    const at = (n: number) => Date.UTC(2026, 0, 1, 0, 0, n);
    const seen: number[][] = [];
    for await (const page of scanRecords(store, { kind: "decision", fromMs: at(2), toMs: at(7) }, 3)) seen.push(page.map((r) => JSON.parse(r.content).input.n));
    expect(seen.flat()).toEqual([3, 4, 5, 6, 2]);
    expect(seen.length).toBeGreaterThan(1);
    const none: unknown[] = [];
    for await (const page of scanRecords(store, { fromMs: at(20) }, 3)) none.push(page);
    expect(none).toEqual([]);
  });
});

describe("ChronVerifier", () => {
  async function chain(n: number) {
    const store = new FakeChronStore();
    const writer = new ChronWriter(store, 1000, logger);
    await Promise.all(Array.from({ length: n }, (_, i) => writer.append(content(i + 1, i % 2 ? "deny" : "allow"))));
    return { store, writer, service: new ChronVerifier(store, writer, { keys: () => undefined }) };
  }

  test("verification gives way to live decisions instead of holding the event loop", async () => {
    const { store, writer } = await chain(4000);
    const live = new LiveWork();
    const service = new ChronVerifier(store, writer, { keys: () => undefined }, live);
    let turns = 0;
    const traffic = setInterval(() => {
      turns += 1;
      live.count += 1;
    }, 1);
    const started = performance.now();
    const result = await service.verify();
    const took = performance.now() - started;
    clearInterval(traffic);
    expect(result).toMatchObject({ valid: true, checked: 4000 });
    // Decisions kept being served while it ran: at least one turn per slice and pause it took.
    expect(turns).toBeGreaterThan(Math.min(10, took / 50));
  });

  test("verifies a long chain page by page", async () => {
    const { service } = await chain(2500);
    const result = await service.verify();
    expect(result).toMatchObject({ valid: true, checked: 2500, head: { seq: 2500 } });
  });

  test("names the first modified record", async () => {
    const { store, service } = await chain(10);
    store.rows[5].content = store.rows[5].content.replace('"deny"', '"allow"');
    store.rows[7].content = store.rows[7].content.replace('"deny"', '"allow"');
    const result = await service.verify();
    // Verification goes on past the first bad record: the second modification is found too.
    expect(result).toMatchObject({ valid: false, checked: 10, problem_count: 2, first_bad: { seq: 6, problem: expect.stringMatching(/^hash mismatch/) } });
    expect(result.problems.map((p) => [p.seq, p.problem.split(":")[0]])).toEqual([
      [6, "hash mismatch"],
      [8, "hash mismatch"],
    ]);
  });

  test("a confined caller is told its own organisation's counts, and of others' records only where they are broken", async () => {
    const store = new FakeChronStore();
    const writer = new ChronWriter(store, 1000, logger);
    for (let n = 1; n <= 6; n++) await writer.append({ ...content(n), organization: { id: n % 2 ? "o-1" : "o-2", slug: n % 2 ? "acme" : "globex" } });
    store.rows[1].action = "secret-action-of-globex";
    const service = new ChronVerifier(store, writer, { keys: () => undefined });
    const all = await service.verify();
    expect(all).toMatchObject({ valid: false, checked: 6, first_bad: { seq: 2, found: "secret-action-of-globex" } });
    const acme = await service.verify({ orgId: "o-1" });
    expect(acme).toMatchObject({ valid: false, checked: 3, head: { seq: 5 }, scope: { organization_id: "o-1" } });
    expect(acme.problems).toEqual([{ seq: 2, problem: "column action disagrees with the record's content", organization: "other" }]);
    expect(JSON.stringify(acme)).not.toContain("secret-action");
  });

  test("columns stored before CLAIIM refused lone surrogates verify as each database stored them, and nothing else does", async () => {
    const { store, service } = await chain(3);
    const legacy = { ...content(2, "deny"), action: "deploy\ud800" };
    const { canonicalRecord } = await import("../../src/chron/record");
    const sealed = canonicalRecord(legacy, 2, store.rows[0].hash);
    Object.assign(store.rows[1], { content: sealed.text, hash: sealed.hash, action: "deploy\ufffd" });
    store.rows[2].prevHash = sealed.hash;
    const resealed = canonicalRecord(JSON.parse(store.rows[2].content), 3, sealed.hash);
    Object.assign(store.rows[2], { hash: resealed.hash });
    expect(await service.verify()).toMatchObject({ valid: true });
    store.rows[1].action = "deploy\ufffd\ufffd\ufffd";
    expect(await service.verify()).toMatchObject({ valid: true });
    store.rows[1].action = "deployX";
    expect(await service.verify()).toMatchObject({ valid: false, first_bad: { seq: 2, problem: "column action disagrees with the record's content" } });
  });

  test("a content nested deeper than canonicalisation allows is reported, not a crash", async () => {
    const { store, service } = await chain(3);
    store.rows[1].content = store.rows[1].content.replace('"input":{"n":2}', `"input":${"[".repeat(5000)}${"]".repeat(5000)}`);
    const result = await service.verify();
    expect(result).toMatchObject({ valid: false, first_bad: { seq: 2, problem: expect.stringMatching(/^content cannot be canonicalised: value is nested deeper than 256/) } });
  });

  test("a row whose hash was recomputed after a change still breaks the next link", async () => {
    const { store, service } = await chain(5);
    const forged = { ...content(3), decision: "deny" as const };
    store.rows[2].content = canonicalize(forged);
    store.rows[2].hash = recordHash(forged, 3, store.rows[2].prevHash);
    store.rows[2].decision = "deny";
    expect(await service.verify()).toMatchObject({ valid: false, first_bad: { seq: 4, problem: expect.stringMatching(/^broken link/) } });
  });

  test("names a deleted record by its missing sequence number", async () => {
    const { store, service } = await chain(10);
    store.rows.splice(4, 1);
    expect(await service.verify()).toMatchObject({ valid: false, first_bad: { seq: 5, problem: expect.stringMatching(/^sequence gap/) } });
  });

  test("names reordered records", async () => {
    const { store, service } = await chain(10);
    const a = store.rows[3];
    const b = store.rows[4];
    [a.seq, b.seq] = [b.seq, a.seq];
    expect(await service.verify()).toMatchObject({ valid: false, first_bad: { seq: 4, problem: expect.stringMatching(/^broken link/) } });
  });

  test("names records cut off the end, which the writer knows were committed", async () => {
    const { store, service } = await chain(10);
    store.rows.splice(8);
    expect(await service.verify()).toMatchObject({ valid: false, head: { seq: 8 }, first_bad: { seq: 9, problem: expect.stringMatching(/^missing/) } });
  });

  test("names filter columns that disagree with the content", async () => {
    const { store, service } = await chain(4);
    store.rows[1].agentId = "someone-else";
    expect(await service.verify()).toMatchObject({ valid: false, first_bad: { seq: 2, problem: "column agentId disagrees with the record's content" } });
  });

  test("lists with filters and an opaque cursor", async () => {
    const { store } = await chain(25);
    const service = new ChronService(store);
    const first = await service.list({ decision: "deny" }, undefined, 5);
    expect(first.records.map((r) => r.seq)).toEqual([2, 4, 6, 8, 10]);
    const second = await service.list({ decision: "deny" }, first.next_cursor!, 5);
    expect(second.records.map((r) => r.seq)).toEqual([12, 14, 16, 18, 20]);
    const last = await service.list({ decision: "deny" }, second.next_cursor!, 5);
    expect(last.records.map((r) => r.seq)).toEqual([22, 24]);
    expect(last.next_cursor).toBeNull();
    await expect(service.list({}, "garbage", 5)).rejects.toMatchObject({ code: "invalid_cursor" });
  });
});

describe("ChronExporter", () => {
  /** A chain of n records on a fake store, with a Chron key, a checkpointer and an exporter of JSON reports up to jsonMax. */
  async function exporterOn(n: number, jsonMax: number) {
    const store = new FakeChronStore();
    const writer = new ChronWriter(store, 1000, logger);
    await Promise.all(Array.from({ length: n }, (_, i) => writer.append(content(i + 1))));
    const keys = newSigner();
    const checkpointer = new Checkpointer(store, keys, { everyRecords: 1000, everySeconds: 3600 }, logger);
    const service = new ChronVerifier(store, writer, { keys: checkpointer.keys() });
    const exporter = new ChronExporter(store, service, checkpointer, (c, e) => writer.commit(c, e), jsonMax, logger);
    return { store, keys, exporter };
  }

  test("a stream that fails midway ends with an explicit error line, which the verifier reports as incomplete", async () => {
    const { store, keys, exporter } = await exporterOn(2500, 100);
    const { body } = await exporter.prepare({}, {}, "ndjson", { type: "system", id: "t", name: "t" }, {});
    const list = store.list.bind(store);
    let calls = 0;
    store.list = async (...args) => {
      if (++calls === 2) throw new Error("connection reset");
      return list(...args);
    };
    const lines: string[] = [];
    for await (const chunk of body) lines.push(chunk);
    const last = JSON.parse(lines[lines.length - 1]);
    expect(last).toEqual({ chron_export: "error", message: "connection reset", records_written: 1000, complete: false });
    async function* items() {
      let n = 0;
      for (const l of lines) {
        const v = JSON.parse(l);
        n += 1;
        yield v.chron_export ? { type: v.chron_export, value: v, line: n } : { type: "record" as const, value: v, line: n };
      }
    }
    const report = await verifyExport(items() as never, jwksKeys({ keys: keys.publicKeys().map(publishChronKey) }));
    expect(report).toMatchObject({ ok: false, records: 1000, problem: { message: expect.stringMatching(/ended with an error: connection reset \(incomplete\)/) } });
  });

  test("a JSON report refuses more records than it may hold, pointing to NDJSON", async () => {
    const { store, exporter } = await exporterOn(30, 20);
    await expect(exporter.prepare({}, {}, "json", { type: "system", id: "t", name: "t" }, {})).rejects.toMatchObject({ status: 413, code: "export_too_large_for_json" });
    expect(store.rows.filter((r) => r.kind === "event")).toHaveLength(0);
  });
});

describe("Checkpointer", () => {
  test("counts the next checkpoint from the one already scheduled, even before it is written", async () => {
    const store = new FakeChronStore();
    const keys = newSigner();
    const checkpointer = new Checkpointer(store, keys, { everyRecords: 10, everySeconds: 3600 }, logger);
    await checkpointer.start();
    const writer = new ChronWriter(store, 1000, logger);
    writer.onCommit((rows) => checkpointer.committed(rows));
    const insert = store.insertCheckpoint.bind(store);
    store.insertCheckpoint = async (c) => {
      await new Promise((r) => setTimeout(r, 30));
      return insert(c);
    };
    for (let i = 1; i <= 25; i++) await writer.append(content(i));
    await checkpointer.idle();
    expect(store.checkpointRows.map((c) => c.seq)).toEqual([10, 20]);
    const service = new ChronVerifier(store, writer, { keys: checkpointer.keys() });
    expect(await service.verify()).toMatchObject({ valid: true, checkpoints: { checked: 2, last: { seq: 20 } } });
  });
});

describe("StoredTree.rebuild (the Merkle frontier read back from the stored links)", () => {
  test("ends at the last record it read, with the root of every record's hash; a record missing on the way is refused, not skipped", async () => {
    const store = new FakeChronStore();
    const writer = new ChronWriter(store, 100, logger);
    for (let i = 1; i <= 12; i++) await writer.append(content(i));
    const tree = new StoredTree(store, lookupIn([]));
    const { frontier, tip } = await tree.rebuild(null);
    expect(tip).toEqual({ seq: 12, hash: store.rows[11].hash });
    const expected = new MerkleFrontier();
    for (const row of store.rows) expected.append(row.hash);
    expect(frontier.root()).toBe(expected.root());
    // A database's owner deletes record 5: the frontier would go on without it and sign a tree the records are not.
    store.rows.splice(4, 1);
    await expect(tree.rebuild(null)).rejects.toThrow(new ChronBrokenError("Chron's records do not run contiguously: record 5 is missing"));
  });
});
