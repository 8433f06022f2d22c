import { runOutsideRequests, type Logger } from "../lib/logger";
import { ClaiimError } from "../lib/errors";
import { DuplicateKeyError } from "../db/duplicate";
import type { WriterState } from "../ops/health";
import { ChronConflictError, type ChronStore, type Effect } from "./chron-store";
import { checkedColumns, seal, type ChainHead, type ChronContent, type ChronRow } from "./record";

/**
 * Failures that say the database cannot be reached or written at all: then every record would
 * fail alone too, and trying them one by one would only multiply the wait.
 */
function unreachable(err: unknown): boolean {
  const code = String((err as { code?: unknown })?.code ?? "");
  return /^(ECONN|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_)/.test(code) || /^(08|53|57)/.test(code) || /^SQLITE_(BUSY|IOERR|FULL|CANTOPEN|READONLY|CORRUPT|NOTADB)/.test(code) || /Connection terminated|connection timeout/i.test((err as Error)?.message ?? "");
}

/** A refusal by the change a commit carries (a taken name, a replayed assertion): the caller's answer, not a failure of Chron. */
function refusedByEffect(err: unknown): boolean {
  return err instanceof DuplicateKeyError || err instanceof ClaiimError;
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
 * WARNING: the chain head lives in memory so that an append reads nothing. After any failed
 * commit it is dropped and re-read from the database, since another writer may have moved it.
 */
export class ChronWriter {
  private queue: Pending[] = [];
  private head: ChainHead | null | undefined = undefined;
  private draining: Promise<void> | null = null;
  private closed = false;
  private committedCount = 0;
  private batchCount = 0;
  private readonly listeners: ((rows: ChronRow[], seconds: number) => void)[] = [];
  private readonly failureListeners: ((seconds: number) => void)[] = [];
  private committingSince: number | null = null;
  private failing: { message: string; atMs: number } | null = null;
  private lastCommitMs: number | null = null;

  constructor(
    private readonly store: ChronStore,
    private readonly maxBatch: number,
    private readonly logger: Logger,
  ) {}

  /** Records one decision. */
  async append(content: ChronContent): Promise<ChronRow> {
    return (await this.commit([content]))[0];
  }

  /** Records contents, in order, together with the effect when there is one. */
  commit(contents: ChronContent[], effect?: Effect): Promise<ChronRow[]> {
    if (this.closed) return Promise.reject(new Error("Chron writer is closed"));
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

  /** Calls `listener` with the committed rows, in chain order, and how long the commit took, after every commit. */
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
    const started = Date.now();
    this.committingSince = started;
    for (let attempt = 1; ; attempt++) {
      try {
        this.head ??= await this.store.head();
        const rows = seal(contents, this.head);
        await this.store.append(rows, effect);
        const last = rows[rows.length - 1];
        this.head = { seq: last.seq, hash: last.hash };
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
        this.head = undefined;
        if (err instanceof ChronConflictError && attempt === 1) {
          this.logger.warn("chron head moved under this writer; re-reading it", { error: err.message });
          continue;
        }
        if (batch.length > 1 && !unreachable(err)) {
          // WARNING: one record must never fail the others (they may be other agents', of other
          // organisations): commit each caller's records on their own, so only the culprit fails.
          this.logger.warn("chron batch failed; committing its appends one by one", { error: (err as Error).message, appends: batch.length });
          for (const p of batch) await this.commitBatch([p]);
          return;
        }
        this.committingSince = null;
        if (effect && refusedByEffect(err)) {
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
}
