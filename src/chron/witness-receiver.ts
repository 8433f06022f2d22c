import fs from "node:fs";
import path from "node:path";
import { z } from "../http/openapi";
import { route, type RouteSpec } from "../http/route";
import { ConflictError, NotFoundError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import { actorOf, rolesOf } from "../shared/principal";
import { verifyConsistency } from "./merkle";
import { malformedHead, readWitnessLog, type WitnessedHead } from "./witness";
import type { HeldHead, HeldLine, ReceivedHeadStore } from "./received-store";

const HEX64 = z.string().regex(/^[0-9a-f]{64}$/);

const HeadBody = z
  .object({
    chron_witness: z.literal(1),
    tree_size: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    root: HEX64,
    hash: HEX64,
    timestamp: z.string().max(64),
    kid: z.string().max(200),
    jws: z.string().max(4096),
    consistency: z
      .object({ from_size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), from_root: HEX64, proof: z.array(HEX64).max(128) })
      .strict()
      .nullable(),
  })
  .strict()
  .openapi("WitnessedTreeHead", { description: "One signed tree head of another CLAIIM's Chron, as its witness log holds it" });

/**
 * CLAIIM as the witness of other CLAIIMs: each API key with the role `witness` is one log (one
 * CLAIIM that posts its signed tree heads), held in the database (ReceivedHeadStore), so that every
 * process on it holds the same heads. A head is stored only if it extends the last one held, by the
 * RFC 9162 consistency proof it carries; otherwise the answer is 409 with the head held (tree_size,
 * root), from which the sender proves again. So a log that forks or shrinks is refused here,
 * whichever process it posts to, and the log read back (NDJSON) proves by itself that what it
 * holds only grew. Signatures are the auditor's to check, with the origin's JWKS
 * (claiim-verify --witness).
 */
export class ReceivedHeads {
  constructor(
    private readonly store: ReceivedHeadStore,
    private readonly logger: Logger,
  ) {}

  /** Stores the head if it extends the last one held; returns the head held after it. */
  async add(log: string, head: WitnessedHead): Promise<HeldHead> {
    // WARNING: the check reads the last head, and the store refuses a second head extending the
    // same one (witness_heads is unique by log and from_size): of two processes that check two
    // heads against one last head at once, one stores; the other reads the new last head and
    // answers as if it had come first. So a fork shown to two processes at once is caught too.
    for (let tries = 0; tries < 3; tries++) {
      const held = await this.store.last(log);
      if (held && head.tree_size === held.tree_size && head.root === held.root) return held;
      this.check(log, held, head);
      // The first head of a log starts it: it is proven from nothing here.
      const stored: WitnessedHead = held ? head : { ...head, consistency: null };
      if (await this.store.extend(log, held?.tree_size ?? 0, [stored])) return { tree_size: stored.tree_size, root: stored.root };
    }
    // Each refused store means another head was stored first; three in a row, the log moves faster than it can be answered.
    const held = await this.store.last(log);
    throw new ConflictError("witness_head_not_extending", `this witness holds a tree of ${held?.tree_size ?? 0} records; prove the new head from it`, held ? { ...held } : {});
  }

  /** Throws the 409 that refuses `head`, unless it extends `held` by its consistency proof. */
  private check(log: string, held: HeldHead | null, head: WitnessedHead): void {
    if (!held) return;
    const c = head.consistency;
    if (head.tree_size < held.tree_size || !c || c.from_size !== held.tree_size || c.from_root !== held.root) {
      throw new ConflictError("witness_head_not_extending", `this witness holds a tree of ${held.tree_size} records; prove the new head from it`, { ...held });
    }
    if (!verifyConsistency(c.from_size, head.tree_size, c.proof, c.from_root, head.root)) {
      this.logger.warn("witness: a head whose consistency proof fails was refused", { log, held: held.tree_size, offered: head.tree_size });
      throw new ConflictError("witness_head_inconsistent", `the consistency proof does not show that the tree of ${head.tree_size} records extends the one of ${held.tree_size} this witness holds: the log forked or was rewritten`, { ...held });
    }
  }

  /** The log's heads, one JSON line each, smallest first; null when it holds none. */
  async read(log: string): Promise<AsyncIterable<string> | null> {
    const pages = this.pages(log);
    const first = await pages.next();
    if (first.done) return null;
    const text = (page: HeldLine[]) => page.map((h) => `${h.line}\n`).join("");
    return (async function* () {
      yield text(first.value);
      for await (const page of pages) yield text(page);
    })();
  }

  /** The heads held for `log`, smallest first, a page at a time. */
  private async *pages(log: string): AsyncGenerator<HeldLine[]> {
    for (let after = 0; ; ) {
      const page = await this.store.lines(log, after, PAGE);
      if (page.length) yield page;
      if (page.length < PAGE) return;
      after = page[page.length - 1].tree_size;
    }
  }

  /**
   * Brings the heads that earlier versions kept in files (`received/<log>.log` under the witness
   * folder, and `worker-N/received/` in worker mode: one file per log and per process) into the
   * database. Each file proves itself line by line (each head extends the one before; a line that
   * does not is left out, and counted). The file that reaches furthest goes first, and each file
   * is read once: its chain extends what the database holds, from the last head held if it passes
   * through it (from its first head when nothing is held), so an import cut short goes on at the
   * next start, and a replica whose file reaches further than another's adds the rest; and its
   * heads of sizes held are held against the database's: two roots for one size are a fork that
   * the witnessed CLAIIM showed to different processes, logged as an error naming the file. Each
   * file is then renamed `<log>.log.imported` (kept, as evidence, and not read again). Files and
   * logs are read a line and a page at a time: a year of heads (some 12 GB a log) does not have to
   * fit in memory.
   */
  async importFiles(dir: string): Promise<void> {
    const folders = [path.join(dir, "received")];
    if (fs.existsSync(dir)) for (const d of fs.readdirSync(dir)) if (/^worker-\d+$/.test(d)) folders.push(path.join(dir, d, "received"));
    const files = new Map<string, string[]>();
    for (const folder of folders) {
      if (!fs.existsSync(folder)) continue;
      for (const name of fs.readdirSync(folder)) {
        const m = /^(.+)\.log$/.exec(name);
        if (m) files.set(m[1], [...(files.get(m[1]) ?? []), path.join(folder, name)]);
      }
    }
    for (const [log, paths] of files) {
      // The file whose chain reaches furthest goes first, so that it is the one that extends the
      // log; its last well-formed line tells which it is without reading it whole. Each file is
      // then read once: what it shares with the heads held is held against them, and what it
      // holds beyond them extends them if its chain passes through the last one held.
      const ordered = paths.map((file) => ({ file, end: lastTreeSize(file) })).sort((a, b) => b.end - a.end);
      let imported = 0;
      for (const { file } of ordered) {
        const bad = { lines: 0 };
        const { added, forks } = await this.importChain(log, chainOf(file, bad));
        imported += added;
        let kept = `${file}.imported`;
        try {
          fs.renameSync(file, kept);
        } catch (err) {
          kept = file;
          // Read again at the next start, and held against the same heads: nothing is lost by it.
          this.logger.warn("witness: a file of received heads could not be renamed once imported", { log, file, error: (err as Error).message });
        }
        if (forks.first) {
          this.logger.error("witness: a file of heads received by one process disagrees with the heads held: the witnessed CLAIIM showed a fork to different processes", {
            log,
            file: kept,
            tree_size: forks.first.tree_size,
            root: forks.first.root,
            held_root: forks.first.held_root,
            heads_disagreeing: forks.count,
          });
        }
        if (bad.lines > 0) this.logger.warn("witness: lines of a file of received heads that do not extend the line before were left out", { log, file: kept, lines: bad.lines });
      }
      this.logger.info("witness: heads received into files brought into the database", { log, files: paths.length, imported });
    }
  }

  /**
   * Walks a file's chain (ascending) once beside the heads held for `log`. A head of a size held
   * is held against it: another root is a fork, counted. A head beyond the last one held is added
   * if the chain passed through that last head (or nothing is held: its first head starts the
   * log); otherwise nothing proves it extends what is held, and it is passed over. An import cut
   * short goes on from there at the next start.
   */
  private async importChain(log: string, chain: AsyncIterable<WitnessedHead>): Promise<{ added: number; forks: Forks }> {
    const held = new HeldWalk(this.store, log);
    let last = await this.store.last(log);
    let passed = last === null;
    let batch: WitnessedHead[] = [];
    let added = 0;
    const forks: Forks = { first: null, count: 0 };

    const take = async (head: WitnessedHead): Promise<void> => {
      if (last && head.tree_size <= last.tree_size) {
        const there = await held.at(head.tree_size);
        if (there && there.root !== head.root) {
          forks.first ??= { tree_size: head.tree_size, root: head.root, held_root: there.root };
          forks.count += 1;
        }
        if (head.tree_size === last.tree_size) passed = there?.root === head.root;
        return;
      }
      if (!passed) return;
      batch.push(head);
      if (batch.length >= IMPORT_BATCH) await flush();
    };
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      const heads = batch;
      batch = [];
      // A log's first head starts it: it is proven from nothing here.
      const rows = last === null ? [{ ...heads[0], consistency: null }, ...heads.slice(1)] : heads;
      if (await this.store.extend(log, last?.tree_size ?? 0, rows)) {
        const end = heads[heads.length - 1];
        last = { tree_size: end.tree_size, root: end.root };
        added += heads.length;
        return;
      }
      // Another process extended the log meanwhile: what it holds stands, and these heads are held against it.
      last = await this.store.last(log);
      passed = last === null;
      for (const head of heads) await take(head);
      await flush();
    };

    for await (const head of chain) await take(head);
    await flush();
    return { added, forks };
  }
}

/**
 * The heads held for a log, walked upwards a page at a time; a page is read when the walk passes
 * the last one read, so heads another process added meanwhile are seen.
 */
class HeldWalk {
  private page: HeldLine[] = [];
  private i = 0;
  private after = 0;

  constructor(
    private readonly store: ReceivedHeadStore,
    private readonly log: string,
  ) {}

  /** The head held of tree size `size`, if any; sizes asked must not go down. */
  async at(size: number): Promise<HeldLine | null> {
    for (;;) {
      while (this.i < this.page.length && this.page[this.i].tree_size < size) this.i += 1;
      if (this.i < this.page.length) return this.page[this.i].tree_size === size ? this.page[this.i] : null;
      const next = await this.store.lines(this.log, this.after, PAGE);
      if (next.length === 0) return null;
      this.page = next;
      this.i = 0;
      this.after = next[next.length - 1].tree_size;
    }
  }
}

/** The tree size of a file's last well-formed line (0 if none), read from its end: which file reaches furthest. */
function lastTreeSize(file: string): number {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const tail = Buffer.alloc(Math.min(size, 1 << 16));
    fs.readSync(fd, tail, 0, tail.length, size - tail.length);
    const lines = tail.toString("utf8").split("\n");
    // The first line of a cut tail may be a part of one: it is skipped unless the tail is the whole file.
    for (let i = lines.length - 1; i >= (tail.length < size ? 1 : 0); i--) {
      try {
        const head = JSON.parse(lines[i]) as unknown;
        if (!malformedHead(head)) return (head as WitnessedHead).tree_size;
      } catch {
        // not a head: the line before it may be
      }
    }
    return 0;
  } finally {
    fs.closeSync(fd);
  }
}

/** Heads of a file whose root differs from the held head of their size: the first of them, and how many. */
type Forks = { first: (HeldHead & { held_root: string }) | null; count: number };

const PAGE = 1000;
const IMPORT_BATCH = 500;

/** The heads of a received file that form its chain (each extending the one before), a line at a time; `bad.lines` counts the lines left out. */
async function* chainOf(file: string, bad = { lines: 0 }): AsyncGenerator<WitnessedHead> {
  for await (const { head, problem } of readWitnessLog(file, null)) {
    if (problem || !head) bad.lines += 1;
    else yield head;
  }
}

export function witnessRoutes(received: ReceivedHeads): RouteSpec[] {
  return [
    route({
      method: "post",
      path: "/v1/witness/heads",
      summary: "Witness another CLAIIM's Chron: store its signed tree head if it extends the last one held (RFC 9162 consistency proof)",
      tags: ["witness"],
      access: { roles: ["witness"] },
      body: HeadBody,
      responses: {
        200: { description: "Stored (or already held): the head this witness now holds", schema: z.object({ tree_size: z.number().int(), root: z.string() }) },
        409: { description: "The head does not extend the one held; the problem carries the head held (tree_size, root)" },
      },
      handle: async ({ body, principal }) => ({ status: 200, body: await received.add(actorOf(principal).id, body as WitnessedHead) }),
    }),
    route({
      method: "get",
      path: "/v1/witness/heads",
      summary: "The witness log of one CLAIIM this one witnesses (NDJSON), for claiim-verify --witness",
      tags: ["witness"],
      access: { roles: ["auditor", "witness"] },
      query: z.object({ log: z.string().uuid().optional().openapi({ description: "The id of the witness key that posts that log; a witness key reads its own" }) }).strict(),
      responses: { 200: { description: "One signed tree head per line", contentType: "application/x-ndjson" }, 404: { description: "No such log" } },
      handle: async ({ query, principal }) => {
        const own = actorOf(principal).id;
        const log = rolesOf(principal).includes("witness") ? own : (query.log ?? own);
        const lines = await received.read(log);
        if (!lines) throw new NotFoundError("witness_log_not_found", "this witness holds no heads for that log");
        return { status: 200, contentType: "application/x-ndjson", stream: lines };
      },
    }),
  ];
}
