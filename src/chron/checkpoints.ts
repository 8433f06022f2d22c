import type { Logger } from "../lib/logger";
import type { CheckpointerState } from "../ops/health";
import { ChronConflictError, type Checkpoint, type ChronStore } from "./chron-store";
import { consistencyProof, MerkleFrontier } from "./merkle";
import { GENESIS_HASH, type ChainHead, type ChronRow } from "./record";
import { lookupIn, signJws, tagVerdict, type ChronKeyLookup, type ChronSigner } from "./signer";
import { verifyCheckpoint, type CheckpointClaims } from "./checkpoint-jws";
import type { WitnessedHead, WitnessLog } from "./witness";
import type { RemoteWitness } from "./remote-witness";

export interface CheckpointPolicy {
  everyRecords: number;
  everySeconds: number;
}

/** A checkpoint CLAIIM refused to sign, because the stored records disagree with what is signed or committed. */
export class ChronBrokenError extends Error {}

/** The record a checkpoint is about, with the Merkle root of the tree of records 1..seq. */
interface Anchor extends ChainHead {
  root: string;
  frontier: string;
}

/** Where signed tree heads go besides the database: the local witness log, and a remote witness. */
export interface Witnesses {
  log: WitnessLog;
  remote: RemoteWitness | null;
}

/** What start-up verification found: the chain's head, and the Merkle frontier at it. */
export interface ChronStart {
  head: ChainHead | null;
  frontier: MerkleFrontier;
}

/**
 * Signs tree heads (checkpoints): every `everyRecords` records or every `everySeconds` seconds,
 * whichever comes first (and only when the chain has grown), when it stops, and on demand at a
 * given record (for exports and retention). A checkpoint signs {sequence, hash, timestamp, count,
 * root} as a compact JWS with the Chron key (through its ChronSigner): the chain's hash at
 * `sequence`, and the RFC 6962 Merkle root of records 1..sequence. Every head that grows the tree
 * is also written to the witness log outside the database (with the consistency proof from the
 * head before) and offered to the remote witness. Once signed and witnessed, a rewritten or
 * shortened chain can no longer match it.
 *
 * WARNING: heads are signed from what the writer committed (the frontier kept in memory), never
 * from what the database says now: a row changed or deleted under a running CLAIIM cannot get
 * itself signed.
 */
export class Checkpointer {
  private last: Checkpoint | null = null;
  /** The highest record a checkpoint is signed or scheduled for: the next one is counted from it. */
  private covered = 0;
  /** The highest record known to be committed (by this process, or by another, as read at a tick). */
  private head: ChainHead | null = null;
  /** The record the frontier ends at: the frontier is the Merkle tree of records 1..tip. */
  private tip: ChainHead | null = null;
  private frontier = new MerkleFrontier();
  /** Signs periodic heads: the process holding the coordinator's lease (see coordinate()). */
  private coordinating = true;
  /** Whether the lease is held this very moment (coordinating follows it through callbacks, which timers may delay). */
  private holds: () => boolean = () => true;
  private pending: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private unsignedSinceMs: number | null = null;
  private failing: { message: string; atMs: number } | null = null;
  private readonly lookup: ChronKeyLookup;
  /** The last head the witness log holds, with the frontier at it. */
  private witnessed: { head: WitnessedHead; frontier: string | null } | null = null;
  /** Record hashes after the witnessed head, in order, up to this process's head; null when not known (then read from the store). */
  private sinceWitnessed: string[] | null = null;

  constructor(
    private readonly store: ChronStore,
    private readonly signer: ChronSigner,
    private readonly policy: CheckpointPolicy,
    private readonly logger: Logger,
    private readonly witnesses: Witnesses | null = null,
  ) {
    this.lookup = lookupIn(signer.publicKeys());
  }

  /**
   * Starts from what start-up verification found, or else rebuilds the Merkle frontier from the
   * stored record hashes (one pass), refusing to go on if it disagrees with the root the last
   * checkpoint signed. Opens the witness log.
   */
  async start(from?: ChronStart): Promise<void> {
    this.last = await this.store.lastCheckpoint();
    this.covered = this.last?.seq ?? 0;
    if (from) {
      this.head = from.head;
      this.frontier = MerkleFrontier.parse(from.frontier.serialize());
    } else {
      await this.rebuild();
      this.head = await this.store.head();
    }
    this.tip = this.head;
    if (this.witnesses) {
      const head = await this.witnesses.log.open(this.logger);
      this.witnessed = head ? { head, frontier: null } : null;
      this.sinceWitnessed = head && head.tree_size === (this.head?.seq ?? 0) ? [] : null;
    }
    if (this.head && this.head.seq > (this.last?.seq ?? 0)) this.unsignedSinceMs = Date.now();
    this.timer = setInterval(() => this.tick(), this.policy.everySeconds * 1000);
    this.timer.unref();
    this.due(false);
  }

  private async rebuild(): Promise<void> {
    const kept = await this.store.bounds({});
    let after = 0;
    if (kept && kept.first > 1) {
      // Records before `first` were archived and pruned: the checkpoint they end at carries the frontier.
      const anchor = await this.store.checkpointAtOrBefore(kept.first - 1);
      if (anchor?.seq !== kept.first - 1 || !anchor.frontier) throw new Error(`Chron starts at record ${kept.first} without the retention checkpoint before it`);
      this.frontier = MerkleFrontier.parse(anchor.frontier);
      this.checkAgainst(anchor, this.frontier);
      after = anchor.seq;
    }
    for (;;) {
      const rows = await this.store.list({}, after, 5000);
      for (const row of rows) {
        this.frontier.append(row.hash);
        if (this.last && row.seq === this.last.seq) this.checkAgainst(this.last, this.frontier);
      }
      if (rows.length < 5000) break;
      after = rows[rows.length - 1].seq;
    }
  }

  /** Signs a last head at what was committed, then stops; the remote witness gets its timeout to take it. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const head = this.head;
    if (head && head.seq > this.covered && this.coordinating) this.due(true);
    await this.idle();
    await this.witnesses?.remote?.stop();
    await this.witnesses?.log.close();
  }

  /** Settles once every checkpoint already due is written. */
  idle(): Promise<unknown> {
    return this.pending;
  }

  /** How signing fares, for readiness and the metrics. */
  health(): CheckpointerState {
    const lastSignedSeq = this.last?.seq ?? 0;
    const headSeq = this.head?.seq ?? 0;
    const unsigned = Math.max(0, headSeq - lastSignedSeq);
    return {
      lastSignedSeq,
      lastSignedAtMs: this.last?.tsMs ?? null,
      headSeq,
      unsigned,
      // WARNING: only the coordinator signs the periodic heads; on the other processes the unsigned
      // tail is not theirs to sign, so it never makes them look stuck (nor not ready).
      lagSeconds: this.coordinating && unsigned > 0 && this.unsignedSinceMs !== null ? (Date.now() - this.unsignedSinceMs) / 1000 : 0,
      failing: this.failing,
    };
  }

  /**
   * Called after every commit of this process's writer, with its rows in order. When other
   * processes appended since the frontier's tip, the rows cannot extend it here: the next signing
   * reads the records in between from the store and checks each (catchUp).
   */
  committed(rows: ChronRow[]): void {
    if (this.unsignedSinceMs === null) this.unsignedSinceMs = Date.now();
    if (rows[0].seq === this.frontier.size + 1 && rows[0].prevHash === (this.tip?.hash ?? GENESIS_HASH)) {
      for (const row of rows) {
        this.frontier.append(row.hash);
        this.sinceWitnessed?.push(row.hash);
      }
      this.tip = { seq: rows[rows.length - 1].seq, hash: rows[rows.length - 1].hash };
    }
    const last = rows[rows.length - 1];
    if (last.seq > (this.head?.seq ?? 0)) this.head = { seq: last.seq, hash: last.hash };
    this.due(false);
  }

  /**
   * Makes this process the coordinator (it signs a head every period, and at stop) or not (it
   * signs only on demand: at(), for exports, retention and key changes). A new coordinator goes on
   * from the last head signed in the database when that is beyond its own frontier: the signature
   * and the Merkle root are checked against the frontier stored with it, and the witness log's next
   * line proves consistency from this process's last witnessed head (witness()).
   */
  async coordinate(on: boolean, holds: () => boolean = () => on): Promise<void> {
    this.coordinating = on;
    this.holds = holds;
    if (!on) return;
    const task = this.pending.then(async () => {
      const last = await this.store.lastCheckpoint();
      if (last) this.last = last;
      if (last?.frontier && last.seq > this.frontier.size) {
        const frontier = MerkleFrontier.parse(last.frontier);
        this.checkAgainst(last, frontier);
        this.frontier = frontier;
        this.tip = { seq: last.seq, hash: last.hash };
        this.sinceWitnessed = null;
      }
      this.covered = Math.max(this.covered, last?.seq ?? 0);
    });
    this.pending = task.catch((err: Error) => this.logger.error("chron coordinator could not take over the last signed head", { error: err.message }));
    await this.pending;
    // The next tick of the timer (within everySeconds) signs what the others wrote meanwhile.
  }

  /** The period's work of the coordinator: learn the chain's head (other processes write too), and sign it if it grew. */
  private tick(): void {
    if (!this.coordinating) return;
    this.store
      .head()
      .then((found) => {
        if (found && found.seq > (this.head?.seq ?? 0)) this.head = found;
        this.due(true);
      })
      .catch((err: Error) => this.logger.error("chron checkpoint: the chain's head could not be read", { error: err.message }));
  }

  /**
   * Extends the frontier with the stored records after its tip, up to `upTo`: each must follow the
   * one before, chain from it, and carry a valid tag (CLAIIM wrote it, here or in another process).
   * WARNING: this is what keeps a head signed over other processes' records as safe as one signed
   * over this process's own: a row no CLAIIM wrote, or one missing, is never signed over.
   */
  private async catchUp(upTo: number): Promise<void> {
    while (this.frontier.size < upTo) {
      const rows = await this.store.list({ toSeq: upTo }, this.frontier.size, 5000);
      if (rows.length === 0) throw new ChronBrokenError(`Chron's records do not run contiguously: record ${this.frontier.size + 1} is missing`);
      for (const row of rows) {
        // This process's own commits may have extended the frontier meanwhile.
        if (row.seq <= this.frontier.size) continue;
        if (row.seq !== this.frontier.size + 1) throw new ChronBrokenError(`Chron's records do not run contiguously: record ${this.frontier.size + 1} is missing`);
        if (row.prevHash !== (this.tip?.hash ?? GENESIS_HASH)) throw new ChronBrokenError(`record ${row.seq} does not chain from the record before it`);
        if (tagVerdict(row.tag, row.hash, this.signer) !== "valid") throw new ChronBrokenError(`record ${row.seq} was not written by CLAIIM (no valid tag): no head is signed over it`);
        this.frontier.append(row.hash);
        this.sinceWitnessed?.push(row.hash);
        this.tip = { seq: row.seq, hash: row.hash };
      }
    }
  }

  /** The keys that verify Chron's signatures. */
  keys(): ChronKeyLookup {
    return this.lookup;
  }

  /** The last head the local witness log holds. */
  lastWitnessed(): WitnessedHead | null {
    return this.witnessed?.head ?? null;
  }

  /**
   * Signs a checkpoint at exactly this record, unless one exists; serialised with the periodic
   * ones. At this process's head, `record` must be what it committed; below it, the stored hashes
   * must rebuild the root of the next signed head (or of the head in memory), or nothing is signed.
   */
  at(record: ChainHead): Promise<Checkpoint> {
    const atHead = this.tip?.seq === record.seq && this.frontier.size === record.seq;
    if (atHead && this.tip!.hash !== record.hash) return Promise.reject(new ChronBrokenError(`record ${record.seq} is not the record CLAIIM committed there`));
    const current = atHead ? this.frontier.serialize() : null;
    const next = this.pending.then(async () => {
      const existing = (await this.store.checkpoints(record.seq - 1, 1))[0];
      if (existing?.seq === record.seq) return existing;
      const frontier = current ? MerkleFrontier.parse(current) : await this.frontierAt(record.seq, record.hash);
      return this.sign(this.anchor(record, frontier));
    });
    this.pending = next.catch(() => undefined);
    return next;
  }

  /** A compact JWS of {header_sha256: digest}, for export headers. */
  signDigest(digest: string): Promise<string> {
    return signJws(this.signer, { header_sha256: digest });
  }

  keyFor(kid: string) {
    return this.lookup(kid);
  }

  /**
   * The consistency proof between the tree of `from.size` records (which must be a witnessed head,
   * so that a checkpoint stores the frontier there) and the tree of `to`, from the stored hashes.
   */
  async proofBetween(from: { size: number; root: string }, to: { tree_size: number }): Promise<string[]> {
    const prefix = await this.frontierAt(from.size);
    if (prefix.root() !== from.root) throw new ChronBrokenError(`the stored records do not rebuild the witnessed root at ${from.size}`);
    return consistencyProof(prefix, await this.hashes(from.size, to.tree_size));
  }

  /** The Merkle frontier of the records before `seq` (for an export's header), from the stored hashes. */
  frontierBefore(seq: number): Promise<MerkleFrontier> {
    return this.frontierAt(seq - 1);
  }

  private checkAgainst(cp: Checkpoint, frontier: MerkleFrontier): void {
    const claims = verifyCheckpoint(cp.jws, this.lookup);
    if (claims.root !== undefined && claims.root !== frontier.root()) {
      throw new ChronBrokenError(`the stored Chron records do not match the Merkle root signed at checkpoint ${cp.seq}: the trail was tampered with`);
    }
  }

  /** Stored record hashes after `after`, up to `upTo`. */
  private async hashes(after: number, upTo: number): Promise<string[]> {
    const out: string[] = [];
    while (after < upTo) {
      const rows = await this.store.list({ toSeq: upTo }, after, 5000);
      if (rows.length === 0) break;
      for (const row of rows) out.push(row.hash);
      after = rows[rows.length - 1].seq;
    }
    return out;
  }

  /**
   * The frontier at record `seq`, from the stored hashes: from the nearest checkpoint at or before
   * it that stores one (checked against the root it signs), or from the first record. With
   * `expectedHash`, the records after `seq` are read on to the next signed head (or to the head in
   * memory) and must rebuild its root, and record `seq` must have that hash: so that nothing
   * rewritten since is ever signed.
   */
  private async frontierAt(seq: number, expectedHash?: string): Promise<MerkleFrontier> {
    let frontier = new MerkleFrontier();
    let after = 0;
    const from = await this.store.checkpointAtOrBefore(seq);
    if (from?.frontier) {
      frontier = MerkleFrontier.parse(from.frontier);
      this.checkAgainst(from, frontier);
      after = from.seq;
    } else {
      const kept = await this.store.bounds({});
      if (kept && kept.first > 1) throw new ChronBrokenError(`Chron starts at record ${kept.first} without the retention checkpoint before it`);
    }
    const next = expectedHash === undefined ? undefined : (await this.store.checkpoints(seq, 1))[0];
    const upTo = expectedHash === undefined ? seq : (next?.seq ?? Math.max(seq, this.tip?.seq ?? seq));
    let atSeq: MerkleFrontier | null = frontier.size === seq ? MerkleFrontier.parse(frontier.serialize()) : null;
    let hashAtSeq: string | null = null;
    while (after < upTo) {
      const rows = await this.store.list({ toSeq: upTo }, after, 5000);
      if (rows.length === 0) break;
      for (const row of rows) {
        if (row.seq !== frontier.size + 1) throw new ChronBrokenError(`Chron's records do not run contiguously: record ${frontier.size + 1} is missing`);
        frontier.append(row.hash);
        if (row.seq === seq) {
          atSeq = MerkleFrontier.parse(frontier.serialize());
          hashAtSeq = row.hash;
        }
      }
      after = rows[rows.length - 1].seq;
    }
    if (!atSeq || frontier.size !== upTo) throw new ChronBrokenError(`Chron's records do not run contiguously up to ${upTo}`);
    if (expectedHash !== undefined) {
      if (hashAtSeq !== null && hashAtSeq !== expectedHash) throw new ChronBrokenError(`record ${seq} changed while CLAIIM was signing it`);
      const signedRoot = next ? verifyCheckpoint(next.jws, this.lookup).root : this.tip?.seq === upTo && this.frontier.size === upTo ? this.frontier.root() : undefined;
      if (signedRoot !== undefined && signedRoot !== frontier.root()) {
        throw new ChronBrokenError(`the stored records up to ${upTo} do not rebuild the Merkle root ${next ? "signed at that checkpoint" : "CLAIIM committed"}: CLAIIM will not sign over them`);
      }
    }
    return atSeq;
  }

  private anchor(record: ChainHead, frontier: MerkleFrontier): Anchor {
    return { ...record, root: frontier.root(), frontier: frontier.serialize() };
  }

  private due(timer: boolean): void {
    if (!this.coordinating || !this.holds()) return;
    const head = this.head;
    if (!head || head.seq <= this.covered) return;
    if (!timer && head.seq - this.covered < this.policy.everyRecords) return;
    this.covered = head.seq;
    // The frontier is taken now: by the time the signing runs, it may have grown.
    const frontier = this.frontier.size === head.seq && this.tip?.hash === head.hash ? MerkleFrontier.parse(this.frontier.serialize()) : null;
    this.pending = this.pending
      .then(async () => {
        if (head.seq <= (this.last?.seq ?? 0) || !this.holds()) return;
        if (frontier) return void (await this.sign(this.anchor(head, frontier)));
        // Other processes' records lie between the frontier and the head: read and check them, then sign at the tip reached.
        await this.catchUp(head.seq);
        await this.sign(this.anchor(this.tip!, MerkleFrontier.parse(this.frontier.serialize())));
      })
      .catch((err: Error) => {
        this.covered = this.last?.seq ?? 0;
        this.failing = { message: err.message, atMs: Date.now() };
        this.logger.error("chron checkpoint failed", { error: err.message, seq: head.seq });
      });
  }

  private async sign(record: Anchor): Promise<Checkpoint> {
    const now = new Date();
    const claims: CheckpointClaims = { sequence: record.seq, hash: record.hash, timestamp: now.toISOString(), count: record.seq, root: record.root };
    const jws = await signJws(this.signer, claims);
    const checkpoint: Checkpoint = { seq: record.seq, hash: record.hash, tsMs: now.getTime(), count: record.seq, kid: this.signer.kid, jws, frontier: record.frontier };
    try {
      await this.store.insertCheckpoint(checkpoint);
    } catch (err) {
      // Another CLAIIM process signed this record first (on demand, or as the coordinator before a takeover): that head stands.
      const theirs = err instanceof ChronConflictError ? (await this.store.checkpoints(record.seq - 1, 1))[0] : undefined;
      if (theirs?.seq !== record.seq || theirs.hash !== record.hash) throw err;
      if (!this.last || theirs.seq > this.last.seq) this.last = theirs;
      this.covered = Math.max(this.covered, theirs.seq);
      return theirs;
    }
    if (!this.last || checkpoint.seq > this.last.seq) this.last = checkpoint;
    this.failing = null;
    // What was committed after this checkpoint's record waits from now (a slight underestimate).
    this.unsignedSinceMs = (this.head?.seq ?? 0) > this.last.seq ? Date.now() : null;
    this.covered = Math.max(this.covered, checkpoint.seq);
    if (this.witnesses && checkpoint.seq > (this.witnessed?.head.tree_size ?? 0)) await this.witness(checkpoint, claims, record.frontier);
    return checkpoint;
  }

  /**
   * Appends a signed head to the witness log, with the consistency proof from the head before it,
   * and offers it to the remote witness. A failure is logged: the checkpoint stands, and the next
   * head is proven from the last one the log holds.
   */
  private async witness(cp: Checkpoint, claims: CheckpointClaims, frontier: string): Promise<void> {
    const previous = this.witnessed;
    try {
      let consistency: WitnessedHead["consistency"] = null;
      if (previous) {
        const from = previous.head.tree_size;
        const known = this.sinceWitnessed && this.sinceWitnessed.length >= cp.seq - from ? this.sinceWitnessed.slice(0, cp.seq - from) : null;
        const prefix = previous.frontier ? MerkleFrontier.parse(previous.frontier) : await this.frontierAt(from);
        const proof = known ? consistencyProof(prefix, known) : await this.proofBetween({ size: from, root: previous.head.root }, { tree_size: cp.seq });
        consistency = { from_size: from, from_root: previous.head.root, proof };
      }
      const head: WitnessedHead = { chron_witness: 1, tree_size: cp.seq, root: claims.root!, hash: cp.hash, timestamp: claims.timestamp, kid: cp.kid, jws: cp.jws, consistency };
      await this.witnesses!.log.append(head);
      this.witnessed = { head, frontier };
      this.sinceWitnessed = this.sinceWitnessed && this.sinceWitnessed.length >= cp.seq - (previous?.head.tree_size ?? 0) ? this.sinceWitnessed.slice(cp.seq - (previous?.head.tree_size ?? 0)) : this.tip?.seq === cp.seq ? [] : null;
      this.witnesses!.remote?.offer(head);
    } catch (err) {
      this.logger.error("witness log: a signed tree head could not be written", { error: (err as Error).message, seq: cp.seq, file: this.witnesses!.log.file });
    }
  }
}
