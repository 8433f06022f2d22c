import { runOutsideRequests, type Logger } from "../lib/logger";
import { ClaiimError } from "../lib/errors";
import { DuplicateKeyError } from "../db/duplicate";
import type { WriterState } from "../ops/health";
import { ChronConflictError, EffectRefused, IdempotencyKeyTaken, type ChronStore, type Effect } from "./chron-store";
import { canonicalRecord, checkedColumns, prepareRecord, sealPrepared, type ChainHead, type ChronContent, type ChronRow } from "./record";
import { tagVerdict, type ChronSigner } from "./signer";

/**
 * Chron stopped taking records: the database holds a record after this writer's head that CLAIIM
 * did not write (no valid tag), or that does not chain from it. Nothing more is appended to a chain
 * someone else wrote into; verification names the record, and a restart refuses to start on it.
 */
export class ChronHaltedError extends Error {
  constructor(
    readonly seq: number,
    readonly problem: string,
  ) {
    super(`Chron is halted: record ${seq} ${problem}`);
  }
}

const NO_TAG = "carries no valid writer's tag";

/**
 * Failures that say the database cannot be reached or written at all: then every record would
 * fail alone too, and trying them one by one would only multiply the wait.
 */
function unreachable(err: unknown): boolean {
  const code = String((err as { code?: unknown })?.code ?? "");
  return /^(ECONN|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_)/.test(code) || /^(08|53|57)/.test(code) || /^SQLITE_(BUSY|IOERR|FULL|CANTOPEN|READONLY|CORRUPT|NOTADB)/.test(code) || /Connection terminated|connection timeout/i.test((err as Error)?.message ?? "");
}

/** A refusal by the change a commit carries (a taken name, a replayed assertion, a lost race for an approval): the caller's answer, not a failure of Chron. */
function refusedByEffect(err: unknown): boolean {
  return err instanceof DuplicateKeyError || err instanceof ClaiimError || err instanceof EffectRefused;
}

interface Pending {
  contents: ChronContent[];
  effect?: Effect;
  resolve(rows: ChronRow[]): void;
  reject(err: unknown): void;
}

/**
 * The single writer of the chain, with group commit: appends that arrive while a batch commits
 * wait and go together in the next transaction. Each caller's promise settles only when its own
 * records have committed (or failed), and the chain's order is the order of commit.
 *
 * A commit that carries an effect (a change to CLAIIM's state) goes in a transaction of its own,
 * so that a change that fails cannot take unrelated decisions down with it.
 *
 * Several writers, one chain: every CLAIIM process on a database has its writer, and each batch
 * is appended under the database's write lock (ChronStore.append), chained on the last record as
 * read inside that transaction. So two processes never take the same seq, and none needs to retry.
 *
 * WARNING: a writer builds only upon a last record that is CLAIIM's: one it committed itself, or,
 * when other processes appended after it, one that carries a valid tag and whose hash covers its
 * content (and chains from this writer's head when it directly follows it). Anything else halts
 * the writer (ChronHaltedError): a database administrator's appended row is never built upon.
 * Listeners hear of this writer's own rows only; a seq it skips was another process's.
 */
export class ChronWriter {
  private queue: Pending[] = [];
  private head: ChainHead | null | undefined = undefined;
  private draining: Promise<void> | null = null;
  private closed = false;
  private committedCount = 0;
  private batchCount = 0;
  /** Told of the records this writer committed, with its commit time in seconds. */
  private readonly listeners: ((rows: ChronRow[], seconds: number) => void)[] = [];
  private readonly failureListeners: ((seconds: number) => void)[] = [];
  private committingSince: number | null = null;
  private failing: { message: string; atMs: number } | null = null;
  private lastCommitMs: number | null = null;
  /** The head this writer last knew for certain (committed by it, adopted, or verified at start). */
  private trusted: ChainHead | null | undefined = undefined;
  private halted: ChronHaltedError | null = null;

  constructor(
    private readonly store: ChronStore,
    private readonly maxBatch: number,
    private readonly logger: Logger,
    /** Tags each record, and checks the tags of records found after this writer's head. Without it (service tests), records are untagged and any head is adopted. */
    private readonly signer?: Pick<ChronSigner, "kid" | "tag">,
  ) {}

  /** The head verified at start-up: the writer goes on from it, and adopts nothing before checking it. */
  startAt(head: ChainHead | null): void {
    this.head = head;
    this.trusted = head;
  }

  /** Why the writer stopped taking records, if it did. */
  haltedBy(): ChronHaltedError | null {
    return this.halted;
  }

  /** Records one decision. */
  async append(content: ChronContent): Promise<ChronRow> {
    return (await this.commit([content]))[0];
  }

  /** Records contents, in order, together with the effect when there is one. */
  commit(contents: ChronContent[], effect?: Effect): Promise<ChronRow[]> {
    if (this.closed) return Promise.reject(new Error("Chron writer is closed"));
    if (this.halted) return Promise.reject(this.halted);
    // A content whose columns cannot be stored is refused here, before it can join a batch.
    try {
      for (const content of contents) checkedColumns(content);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<ChronRow[]>((resolve, reject) => {
      this.queue.push({ contents, effect, resolve, reject });
      // Defer to the check phase, so that everything that arrived in this turn joins the batch.
      this.draining ??= runOutsideRequests(() => new Promise<void>((done) => setImmediate(() => this.drain().finally(done))));
    });
  }

  /** Calls `listener` with the rows this writer committed, in chain order, after every commit, with how long it took (rows of other processes come between). */
  onCommit(listener: (rows: ChronRow[], seconds: number) => void): void {
    this.listeners.push(listener);
  }

  /** Calls `listener` after every commit that failed (not those its own change refused). */
  onFailure(listener: (seconds: number) => void): void {
    this.failureListeners.push(listener);
  }

  /** How the writer fares, for readiness and the metrics. */
  health(): WriterState {
    return { queued: this.queue.length, committingSinceMs: this.committingSince, failing: this.failing, lastCommitMs: this.lastCommitMs };
  }

  /** The last committed record, as this writer knows it (null before the first append). */
  knownHead(): ChainHead | null {
    return this.head ?? null;
  }

  stats(): { committed: number; batches: number; queued: number } {
    return { committed: this.committedCount, batches: this.batchCount, queued: this.queue.length };
  }

  /** Commits what is queued, then refuses new appends. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.draining) await this.draining;
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) await this.commitBatch(this.takeBatch());
    } finally {
      this.draining = null;
    }
  }

  /** The next batch: one pending with an effect, or a run of plain appends up to maxBatch records. */
  private takeBatch(): Pending[] {
    if (this.queue[0].effect) return this.queue.splice(0, 1);
    let n = 0;
    let records = 0;
    while (n < this.queue.length && !this.queue[n].effect && (n === 0 || records + this.queue[n].contents.length <= this.maxBatch)) {
      records += this.queue[n].contents.length;
      n += 1;
    }
    return this.queue.splice(0, n);
  }

  private async commitBatch(batch: Pending[]): Promise<void> {
    const contents = batch.flatMap((p) => p.contents);
    const effect = batch.length === 1 ? batch[0].effect : undefined;
    // Canonicalised once, here: under the lock only hashing and tagging are left to do.
    const prepared = contents.map((c) => prepareRecord(c));
    const tagger = this.signer ? (hash: string) => this.signer!.tag(hash) : undefined;
    const started = Date.now();
    this.committingSince = started;
    for (let attempt = 1; ; attempt++) {
      try {
        if (this.halted) throw this.halted;
        const rows = await this.store.append((found) => sealPrepared(prepared, this.follow(found), tagger), effect);
        const last = rows[rows.length - 1];
        this.head = { seq: last.seq, hash: last.hash };
        this.trusted = this.head;
        this.committedCount += rows.length;
        this.batchCount += 1;
        this.committingSince = null;
        this.failing = null;
        this.lastCommitMs = Date.now();
        const seconds = (this.lastCommitMs - started) / 1000;
        let offset = 0;
        for (const p of batch) {
          p.resolve(rows.slice(offset, offset + p.contents.length));
          offset += p.contents.length;
        }
        for (const listener of this.listeners) listener(rows, seconds);
        return;
      } catch (err) {
        if (err instanceof ChronHaltedError) {
          this.committingSince = null;
          batch.forEach((p) => p.reject(err));
          return;
        }
        if (err instanceof ChronConflictError && attempt === 1) {
          this.logger.warn("chron head moved under this writer; appending again", { error: err.message });
          continue;
        }
        if (batch.length > 1 && !unreachable(err)) {
          // WARNING: one record must never fail the others (they may be other agents', of other
          // organisations): commit each caller's records on their own, so only the culprit fails.
          // A retry whose key another process holds is expected: it is not worth a warning.
          this.logger.log(err instanceof IdempotencyKeyTaken ? "debug" : "warn", "chron batch failed; committing its appends one by one", { error: (err as Error).message, appends: batch.length });
          for (const p of batch) await this.commitBatch([p]);
          return;
        }
        this.committingSince = null;
        if (err instanceof IdempotencyKeyTaken || (effect && refusedByEffect(err))) {
          // Nothing is wrong with Chron: the change was refused, and its caller answers why.
          this.logger.debug("chron commit refused by its change", { error: (err as Error).message });
        } else {
          this.failing = { message: (err as Error).message, atMs: Date.now() };
          for (const listener of this.failureListeners) listener((Date.now() - started) / 1000);
          this.logger.error("chron commit failed", { error: (err as Error).message, records: contents.length });
        }
        batch.forEach((p) => p.reject(err));
        return;
      }
    }
  }

  /**
   * The head to chain the batch on, given the chain's last record as read under the writers' lock;
   * throws (halting the writer) when that record is not one to build upon. Runs under the lock, so
   * it reads nothing more: records other writers appended in between are not this writer's to
   * check one by one (the lease holder's checkpointer does, before it signs over them), but the
   * last of them must be CLAIIM's, chain from this writer's head when it directly follows it, and
   * have a hash that covers its content.
   */
  private follow(found: ChronRow | null): ChainHead | null {
    const head = found ? { seq: found.seq, hash: found.hash } : null;
    const known = this.trusted;
    if (known === undefined || !this.signer) return head;
    const knownSeq = known?.seq ?? 0;
    if (head?.seq === known?.seq && head?.hash === known?.hash) return head;
    if ((head?.seq ?? 0) < knownSeq) throw this.halt(head ? head.seq + 1 : 1, "and those after it, which this writer committed, are no longer stored");
    if (found!.seq === knownSeq) throw this.halt(found!.seq, "is not the record this writer committed there");
    const problem = this.foreignProblem(found!, found!.seq === knownSeq + 1 ? known : { seq: found!.seq - 1, hash: found!.prevHash });
    if (problem) throw this.halt(found!.seq, problem);
    return head;
  }

  /** Why a record found after `prev` is not one to build upon; null when it is CLAIIM's and chains. */
  private foreignProblem(row: ChronRow, prev: ChainHead | null): string | null {
    if (row.seq !== (prev?.seq ?? 0) + 1) return "is not the next record";
    if (prev && row.prevHash !== prev.hash) return "does not chain from this writer's head";
    const problem = this.notOurs(row);
    return problem === NO_TAG ? "was not written by CLAIIM (no valid tag) after this writer's head" : problem;
  }

  /** Why a stored record is not one CLAIIM wrote as it stands; null when its hash covers its content and it carries a valid tag. */
  private notOurs(row: ChronRow): string | null {
    try {
      if (canonicalRecord(JSON.parse(row.content) as ChronContent, row.seq, row.prevHash).hash !== row.hash) return "has a hash that does not cover its content";
    } catch {
      return "has content that is not a record";
    }
    return !this.signer || tagVerdict(row.tag, row.hash, this.signer) === "valid" ? null : NO_TAG;
  }

  /**
   * The decision that holds agent `agentId`'s Idempotency-Key `key` in the database, read when an
   * append was refused for it (IdempotencyKeyTaken): its answer is the retry's. Only a record
   * CLAIIM wrote answers: one whose hash does not cover its content, without a valid tag, or whose
   * content is not that agent's decision under that key (a row edited or inserted by hand) is
   * reported and treated as no claim at all (null), as is a record retention has removed since.
   */
  async claimOf(agentId: string, key: string): Promise<ChronRow | null> {
    const row = await this.store.claimOf(agentId, key);
    if (!row) return null;
    let problem = this.notOurs(row);
    if (!problem) {
      const content = JSON.parse(row.content) as ChronContent;
      if (content.kind !== "decision" || content.agent?.id !== agentId || content.idempotency_key !== key) problem = "is not a decision of this agent under this key";
    }
    if (!problem) return row;
    this.logger.error("a record holds an Idempotency-Key but is not CLAIIM's decision under it; the request is decided without the key", { seq: row.seq, agent_id: agentId, problem });
    return null;
  }

  private halt(seq: number, problem: string): ChronHaltedError {
    this.halted = new ChronHaltedError(seq, problem);
    this.logger.error("chron halted: a record CLAIIM did not write", { seq, problem });
    return this.halted;
  }
}
