// CLAIIM as the witness of other CLAIIMs (ReceivedHeads), on the in-memory witness_heads: a head
// is held only if it extends the last one, whichever process was asked; the files of earlier
// versions come into the store once, and a fork they show is reported.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ReceivedHeads } from "../../src/chron/witness-receiver";
import type { WitnessedHead } from "../../src/chron/witness";
import { createLogger } from "../../src/lib/logger";
import { FakeReceivedHeadStore } from "../support/fakes/received-store";
import { MadeUpLog } from "../support/witnessed-heads";
import { Writable } from "node:stream";

const LOG = "7d0b7c8e-6a43-4c1e-9a57-0c1f2b3e4d5a";

function capture(): { logger: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split("\n")) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger("info", stream), lines };
}

async function refusal(p: Promise<unknown>): Promise<Record<string, unknown>> {
  try {
    await p;
  } catch (err) {
    return { code: (err as { code?: string }).code, ...((err as { extra?: Record<string, unknown> }).extra ?? {}) };
  }
  throw new Error("not refused");
}

async function held(store: FakeReceivedHeadStore): Promise<WitnessedHead[]> {
  return (await store.lines(LOG, 0, 1000)).map((l) => JSON.parse(l.line) as WitnessedHead);
}

/** A store on which another process extends the log (`race`) just before the first write of this one. */
class RacedStore extends FakeReceivedHeadStore {
  private raced = false;
  constructor(private readonly race: (store: FakeReceivedHeadStore) => Promise<void>) {
    super();
  }
  override async extend(log: string, from: number, heads: WitnessedHead[]): Promise<boolean> {
    if (!this.raced) {
      this.raced = true;
      await this.race(this);
    }
    return super.extend(log, from, heads);
  }
}

describe("heads received as a witness", () => {
  test("each head is held only if its consistency proof extends the last one held; the log's first starts it; a head posted again is answered as held", async () => {
    const store = new FakeReceivedHeadStore();
    const witness = new ReceivedHeads(store, createLogger("silent"));
    const log = new MadeUpLog();
    // The first head comes with a proof from a head this witness never held: it starts the log, proven from nothing.
    const first = log.head(5, 3);
    expect(await witness.add(LOG, first)).toEqual({ tree_size: 5, root: first.root });
    const second = log.head(12, 5);
    expect(await witness.add(LOG, second)).toEqual({ tree_size: 12, root: second.root });
    expect(await witness.add(LOG, second)).toEqual({ tree_size: 12, root: second.root });

    // A fork of the 12 records held: a proof from them that does not hold.
    const fork = log.fork(12).head(20, 12);
    fork.consistency!.proof = log.head(20, 12).consistency!.proof;
    expect(await refusal(witness.add(LOG, fork))).toEqual({ code: "witness_head_inconsistent", tree_size: 12, root: second.root });
    // Proven from an older head, from nothing, or a smaller tree: not extending what is held.
    expect(await refusal(witness.add(LOG, log.head(20, 5)))).toEqual({ code: "witness_head_not_extending", tree_size: 12, root: second.root });
    expect(await refusal(witness.add(LOG, log.head(20, null)))).toMatchObject({ code: "witness_head_not_extending" });
    expect(await refusal(witness.add(LOG, first))).toMatchObject({ code: "witness_head_not_extending" });

    expect((await held(store)).map((h) => [h.tree_size, h.consistency?.from_size ?? null])).toEqual([
      [5, null],
      [12, 5],
    ]);
    // What is read back is a witness log: one JSON line per head, smallest first.
    const lines = await witness.read(LOG);
    let text = "";
    for await (const chunk of lines!) text += chunk;
    expect(text.trim().split("\n").map((l) => JSON.parse(l).tree_size)).toEqual([5, 12]);
    expect(await witness.read("00000000-0000-4000-8000-000000000000")).toBeNull();
  });

  test("two processes asked at once to extend the same head with two branches of a fork: one holds its branch, the other refuses", async () => {
    const store = new FakeReceivedHeadStore();
    // Two processes on one database: two services on one store.
    const a = new ReceivedHeads(store, createLogger("silent"));
    const b = new ReceivedHeads(store, createLogger("silent"));
    let log = new MadeUpLog();
    await a.add(LOG, log.head(8, null));
    for (let round = 0; round < 20; round++) {
      const last = (await store.last(LOG))!;
      const other = log.fork(last.tree_size);
      const branches = [log.head(last.tree_size + 3, last.tree_size), other.head(last.tree_size + 5, last.tree_size)];
      const answers = await Promise.allSettled([a.add(LOG, branches[0]), b.add(LOG, branches[1])]);
      // The log goes on from the branch held.
      if ((await store.last(LOG))!.root === branches[1].root) log = other;
      expect(answers.map((x) => x.status).sort()).toEqual(["fulfilled", "rejected"]);
      const refused = answers.find((x) => x.status === "rejected") as PromiseRejectedResult;
      expect(refused.reason.code).toBe("witness_head_not_extending");
    }
    // The log held is one chain, each head proven from the one before.
    const heads = await held(store);
    expect(heads).toHaveLength(21);
    for (let i = 1; i < heads.length; i++) expect(heads[i].consistency).toMatchObject({ from_size: heads[i - 1].tree_size, from_root: heads[i - 1].root });
  });

  test("the same head posted to two processes at once (a sender's retry) is held once and both answer it", async () => {
    const store = new FakeReceivedHeadStore();
    const a = new ReceivedHeads(store, createLogger("silent"));
    const b = new ReceivedHeads(store, createLogger("silent"));
    const log = new MadeUpLog();
    await a.add(LOG, log.head(4, null));
    const next = log.head(9, 4);
    expect(await Promise.all([a.add(LOG, next), b.add(LOG, next)])).toEqual([
      { tree_size: 9, root: next.root },
      { tree_size: 9, root: next.root },
    ]);
    expect((await held(store)).map((h) => h.tree_size)).toEqual([4, 9]);
  });

  describe("files of heads received by earlier versions", () => {
    let dir: string;
    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "claiim-received-"));
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    const write = (file: string, heads: (WitnessedHead | string)[]) => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, heads.map((h) => (typeof h === "string" ? h : JSON.stringify(h))).join("\n") + "\n");
    };

    test("the longest chain of a log's files is held; a fork between two workers' files is reported; each file is renamed, and not read again", async () => {
      const log = new MadeUpLog();
      const h3 = { ...log.head(3, null) };
      const h6 = log.head(6, 3);
      const h10 = log.head(10, 6);
      const h15 = log.head(15, 10);
      // Worker 1 held 3, 6, 10 and 15 (a broken line among them); worker 2 held 3, then a branch at 10 that worker 1 never saw.
      write(path.join(dir, "worker-1", "received", `${LOG}.log`), [h3, h6, "{not json", h10, { ...log.head(12, 6), tree_size: 9 }, h15]);
      const forked = log.fork(3).head(10, 3);
      write(path.join(dir, "worker-2", "received", `${LOG}.log`), [h3, forked]);
      // A log held by a process alone (no worker mode).
      const other = new MadeUpLog();
      const OTHER = "0e2c7a4e-1111-4c1e-9a57-0c1f2b3e4d5a";
      write(path.join(dir, "received", `${OTHER}.log`), [other.head(2, null), other.head(7, 2)]);

      const store = new FakeReceivedHeadStore();
      const { logger, lines } = capture();
      const witness = new ReceivedHeads(store, logger);
      await witness.importFiles(dir);

      expect((await held(store)).map((h) => h.tree_size)).toEqual([3, 6, 10, 15]);
      expect((await store.lines(OTHER, 0, 10)).map((l) => l.tree_size)).toEqual([2, 7]);
      const fork = lines.find((l) => l.level === "error");
      expect(fork).toMatchObject({ log: LOG, file: path.join(dir, "worker-2", "received", `${LOG}.log.imported`), tree_size: 10, root: forked.root, held_root: h10.root });
      expect(lines.filter((l) => String(l.message).startsWith("witness: lines"))).toEqual([expect.objectContaining({ lines: 2, file: expect.stringContaining("worker-1") })]);
      expect(fs.existsSync(path.join(dir, "worker-1", "received", `${LOG}.log.imported`))).toBe(true);
      expect(fs.existsSync(path.join(dir, "worker-1", "received", `${LOG}.log`))).toBe(false);

      // The log goes on from what was imported.
      expect(await witness.add(LOG, log.head(20, 15))).toMatchObject({ tree_size: 20 });
      // A second start finds nothing to import.
      const again = capture();
      await new ReceivedHeads(store, again.logger).importFiles(dir);
      expect(again.lines).toEqual([]);
    });

    test("an import cut short goes on from the last head held at the next start; a file that does not pass through it adds nothing", async () => {
      const log = new MadeUpLog();
      const heads = [log.head(2, null), log.head(5, 2), log.head(9, 5), log.head(14, 9), log.head(20, 14)];
      const store = new FakeReceivedHeadStore();
      // What a start stopped midway left: the file's first two heads.
      await store.extend(LOG, 0, [{ ...heads[0], consistency: null }, heads[1]]);
      write(path.join(dir, "received", `${LOG}.log`), heads);
      // Another worker's file, on a branch after 5: it does not pass through the last head held once the first file is in.
      write(path.join(dir, "worker-1", "received", `${LOG}.log`), [heads[0], heads[1], log.fork(5).head(9, 5)]);
      const { logger, lines } = capture();
      await new ReceivedHeads(store, logger).importFiles(dir);
      expect((await held(store)).map((h) => [h.tree_size, h.consistency?.from_size ?? null])).toEqual([
        [2, null],
        [5, 2],
        [9, 5],
        [14, 9],
        [20, 14],
      ]);
      expect(lines.find((l) => l.message === "witness: heads received into files brought into the database")).toMatchObject({ imported: 3, files: 2 });
      expect(lines.filter((l) => l.level === "error")).toEqual([expect.objectContaining({ tree_size: 9, file: expect.stringContaining("worker-1") })]);
    });

    test("each file is read once, however many files a log has and whichever reaches furthest", async () => {
      const log = new MadeUpLog();
      const heads = [log.head(2, null), log.head(5, 2), log.head(9, 5), log.head(14, 9)];
      write(path.join(dir, "received", `${LOG}.log`), heads.slice(0, 2));
      write(path.join(dir, "worker-1", "received", `${LOG}.log`), heads);
      write(path.join(dir, "worker-2", "received", `${LOG}.log`), [heads[0], log.head(9, 2)]);
      // The whole of a file is read through readWitnessLog's stream; choosing the furthest reads only the last 64 KiB of each.
      const opened: string[] = [];
      const real = fs.createReadStream;
      const spy = jest.spyOn(fs, "createReadStream").mockImplementation(((file: fs.PathLike, options?: unknown) => {
        opened.push(String(file));
        return real(file, options as never);
      }) as typeof fs.createReadStream);
      try {
        const store = new FakeReceivedHeadStore();
        await new ReceivedHeads(store, createLogger("silent")).importFiles(dir);
        expect((await held(store)).map((h) => h.tree_size)).toEqual([2, 5, 9, 14]);
      } finally {
        spy.mockRestore();
      }
      expect(opened.sort()).toEqual([path.join(dir, "received", `${LOG}.log`), path.join(dir, "worker-1", "received", `${LOG}.log`), path.join(dir, "worker-2", "received", `${LOG}.log`)].sort());
    });

    test("another process extending the log during an import: the heads it holds stand, the file is held against them and goes on from their end if it passes through it", async () => {
      const log = new MadeUpLog();
      const heads = [log.head(2, null), log.head(5, 2), log.head(9, 5), log.head(14, 9)];
      write(path.join(dir, "received", `${LOG}.log`), heads);
      // The other process adds the file's first two heads just before this one's first write: the import goes on from 5.
      const same = new RacedStore(async (store) => expect(await store.extend(LOG, 0, [{ ...heads[0], consistency: null }, heads[1]])).toBe(true));
      const { logger, lines } = capture();
      await new ReceivedHeads(same, logger).importFiles(dir);
      expect((await held(same)).map((h) => [h.tree_size, h.consistency?.from_size ?? null])).toEqual([
        [2, null],
        [5, 2],
        [9, 5],
        [14, 9],
      ]);
      expect(lines.filter((l) => l.level === "error")).toEqual([]);
      expect(lines.find((l) => l.message === "witness: heads received into files brought into the database")).toMatchObject({ imported: 2 });

      // Here it adds another branch at 9: nothing of the file beyond 5 is added, and its 9 is reported as a fork.
      fs.renameSync(path.join(dir, "received", `${LOG}.log.imported`), path.join(dir, "received", `${LOG}.log`));
      const branch = log.fork(5).head(9, 5);
      const forked = new RacedStore(async (store) => expect(await store.extend(LOG, 0, [{ ...heads[0], consistency: null }, heads[1], branch])).toBe(true));
      const second = capture();
      await new ReceivedHeads(forked, second.logger).importFiles(dir);
      expect((await held(forked)).map((h) => h.root)).toEqual([heads[0].root, heads[1].root, branch.root]);
      expect(second.lines.filter((l) => l.level === "error")).toEqual([expect.objectContaining({ tree_size: 9, root: heads[2].root, held_root: branch.root, heads_disagreeing: 1 })]);
      expect(second.lines.find((l) => l.message === "witness: heads received into files brought into the database")).toMatchObject({ imported: 0 });
    });

    test("a file of a log the database holds already (another replica imported its own first) adds nothing, and is still held against it", async () => {
      const log = new MadeUpLog();
      const store = new FakeReceivedHeadStore();
      const witness = new ReceivedHeads(store, createLogger("silent"));
      await witness.add(LOG, log.head(4, null));
      await witness.add(LOG, log.head(8, 4));
      write(path.join(dir, "received", `${LOG}.log`), [log.head(4, null), log.fork(4).head(8, 4)]);
      const { logger, lines } = capture();
      await new ReceivedHeads(store, logger).importFiles(dir);
      expect((await held(store)).map((h) => h.tree_size)).toEqual([4, 8]);
      expect(lines.filter((l) => l.level === "error")).toEqual([expect.objectContaining({ log: LOG, tree_size: 8 })]);
    });
  });
});
