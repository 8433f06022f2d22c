import { createPublicKey, type KeyObject } from "node:crypto";
import jwt from "jsonwebtoken";
import type { Logger } from "../lib/logger";
import type { CheckpointerState } from "../ops/health";
import type { SigningKeys } from "../keys/signing-keys";
import type { Checkpoint, ChronStore } from "./chron-store";
import { MerkleFrontier } from "./merkle";
import type { ChainHead, ChronRow } from "./record";

/** What a checkpoint's JWS says. */
export interface CheckpointClaims {
  sequence: number;
  hash: string;
  timestamp: string;
  count: number;
  /** RFC 6962 Merkle root over the hashes of records 1..sequence. */
  root?: string;
}

export interface CheckpointPolicy {
  everyRecords: number;
  everySeconds: number;
}

/** Checks a checkpoint's signature with the key its kid names; returns what it signs, or throws why not. */
export function verifyCheckpoint(jws: string, keyFor: (kid: string) => KeyObject | undefined): CheckpointClaims {
  const decoded = jwt.decode(jws, { complete: true });
  if (!decoded || typeof decoded.payload === "string") throw new Error("checkpoint is not a JWS");
  const key = decoded.header.kid ? keyFor(decoded.header.kid) : undefined;
  if (!key) throw new Error(`checkpoint is signed by an unknown key (kid ${decoded.header.kid ?? "missing"})`);
  try {
    const claims = jwt.verify(jws, key, { algorithms: ["ES256"] }) as unknown as CheckpointClaims;
    if (typeof claims.sequence !== "number" || typeof claims.hash !== "string" || typeof claims.count !== "number") throw new Error("checkpoint lacks sequence, hash or count");
    return claims;
  } catch (err) {
    throw new Error(`checkpoint signature does not verify: ${(err as Error).message}`);
  }
}

/** Checks an export header's signature; returns the digest it signs, or throws why not. */
export function verifyDigestSignature(jws: string, keyFor: (kid: string) => KeyObject | undefined): string {
  const decoded = jwt.decode(jws, { complete: true });
  const key = decoded?.header.kid ? keyFor(decoded.header.kid) : undefined;
  if (!key) throw new Error("the header is signed by an unknown key");
  try {
    const claims = jwt.verify(jws, key, { algorithms: ["ES256"] }) as { header_sha256?: unknown };
    if (typeof claims.header_sha256 !== "string") throw new Error("no header_sha256");
    return claims.header_sha256;
  } catch (err) {
    throw new Error(`the header's signature does not verify: ${(err as Error).message}`);
  }
}

/** A key lookup over a JWKS document, for verifiers that hold no server. */
export function jwksKeys(jwks: { keys: Record<string, unknown>[] }): (kid: string) => KeyObject | undefined {
  const byKid = new Map<string, KeyObject>();
  for (const jwk of jwks.keys ?? []) {
    if (typeof jwk.kid === "string") byKid.set(jwk.kid, createPublicKey({ key: jwk as unknown as import("node:crypto").JsonWebKey, format: "jwk" }));
  }
  return (kid) => byKid.get(kid);
}

/** The record a checkpoint is about, with the Merkle root of the tree of records 1..seq. */
interface Anchor extends ChainHead {
  root: string;
  frontier: string;
}

/**
 * Signs checkpoints: every `everyRecords` records or every `everySeconds` seconds, whichever comes
 * first (and only when the chain has grown), and on demand at a given record (for exports). A
 * checkpoint signs {sequence, hash, timestamp, count, root} as a compact JWS with the Chron key,
 * whose public half is in the JWKS: the chain's hash at `sequence`, and the RFC 6962 Merkle root of
 * records 1..sequence, against which single records can later be proven. Once signed, a rewritten
 * chain can no longer match it.
 */
export class Checkpointer {
  private last: Checkpoint | null = null;
  /** The highest record a checkpoint is signed or scheduled for: the next one is counted from it. */
  private covered = 0;
  private head: ChainHead | null = null;
  private frontier = new MerkleFrontier();
  private pending: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private unsignedSinceMs: number | null = null;
  private failing: { message: string; atMs: number } | null = null;

  constructor(
    private readonly store: ChronStore,
    private readonly keys: SigningKeys,
    private readonly policy: CheckpointPolicy,
    private readonly logger: Logger,
  ) {}

  /**
   * Rebuilds the Merkle frontier from the stored record hashes (one pass from the first kept
   * record), and refuses to go on if it disagrees with the root the last checkpoint signed: the
   * stored chain was tampered with.
   */
  async start(): Promise<void> {
    this.last = await this.store.lastCheckpoint();
    this.covered = this.last?.seq ?? 0;
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
    this.head = await this.store.head();
    if (this.head && this.head.seq > (this.last?.seq ?? 0)) this.unsignedSinceMs = Date.now();
    this.timer = setInterval(() => this.due(true), this.policy.everySeconds * 1000);
    this.timer.unref();
    this.due(false);
  }

  /**
   * Stops the timer and signs what is still unsigned (call it once the writer has committed its
   * last records): a clean stop leaves no unsigned tail for someone with the database to rewrite
   * while CLAIIM is down.
   */
  stop(): Promise<unknown> {
    if (this.timer) clearInterval(this.timer);
    this.due(true);
    return this.idle();
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
      lagSeconds: unsigned > 0 && this.unsignedSinceMs !== null ? (Date.now() - this.unsignedSinceMs) / 1000 : 0,
      failing: this.failing,
    };
  }

  /** Called after every Chron commit, with the committed rows in order. */
  committed(rows: ChronRow[]): void {
    if (this.unsignedSinceMs === null) this.unsignedSinceMs = Date.now();
    for (const row of rows) this.frontier.append(row.hash);
    this.head = { seq: rows[rows.length - 1].seq, hash: rows[rows.length - 1].hash };
    this.due(false);
  }

  /** Signs a checkpoint at exactly this record, unless one exists; serialised with the periodic ones. */
  at(record: ChainHead): Promise<Checkpoint> {
    const current = this.frontier.size === record.seq ? this.frontier.serialize() : null;
    const next = this.pending.then(async () => {
      const existing = (await this.store.checkpoints(record.seq - 1, 1))[0];
      if (existing?.seq === record.seq) return existing;
      return this.sign(this.anchor(record, current ? MerkleFrontier.parse(current) : await this.frontierAt(record.seq)));
    });
    this.pending = next.catch(() => undefined);
    return next;
  }

  /** A compact JWS of {header_sha256: digest}, for export headers. */
  signDigest(digest: string): string {
    const key = this.keys.current();
    return jwt.sign({ header_sha256: digest }, key.privateKey, { algorithm: key.alg, keyid: key.kid, noTimestamp: true });
  }

  keyFor(kid: string): KeyObject | undefined {
    return this.keys.all().find((k) => k.kid === kid)?.publicKey;
  }

  private checkAgainst(cp: Checkpoint, frontier: MerkleFrontier): void {
    const claims = verifyCheckpoint(cp.jws, (kid) => this.keyFor(kid));
    if (claims.root !== undefined && claims.root !== frontier.root()) {
      throw new Error(`the stored Chron records do not match the Merkle root signed at checkpoint ${cp.seq}: the trail was tampered with`);
    }
  }

  /**
   * The frontier at record `seq`: from the nearest checkpoint at or before it that stores one
   * (checked against the root it signs), or from the first record, then the stored hashes after it.
   */
  private async frontierAt(seq: number): Promise<MerkleFrontier> {
    let frontier = new MerkleFrontier();
    let after = 0;
    const from = await this.store.checkpointAtOrBefore(seq);
    if (from?.frontier) {
      frontier = MerkleFrontier.parse(from.frontier);
      this.checkAgainst(from, frontier);
      after = from.seq;
    } else {
      const kept = await this.store.bounds({});
      if (kept && kept.first > 1) throw new Error(`Chron starts at record ${kept.first} without the retention checkpoint before it`);
    }
    while (after < seq) {
      const rows = await this.store.list({ toSeq: seq }, after, 5000);
      if (rows.length === 0) break;
      for (const row of rows) frontier.append(row.hash);
      after = rows[rows.length - 1].seq;
    }
    if (frontier.size !== seq) throw new Error(`Chron's records do not run contiguously up to ${seq}`);
    return frontier;
  }

  private anchor(record: ChainHead, frontier: MerkleFrontier): Anchor {
    return { ...record, root: frontier.root(), frontier: frontier.serialize() };
  }

  private due(timer: boolean): void {
    const head = this.head;
    if (!head || head.seq <= this.covered) return;
    if (!timer && head.seq - this.covered < this.policy.everyRecords) return;
    this.covered = head.seq;
    // The frontier is taken now: by the time the signing runs, it may have grown.
    const frontier = this.frontier.size === head.seq ? MerkleFrontier.parse(this.frontier.serialize()) : null;
    this.pending = this.pending
      .then(async () => {
        if (head.seq > (this.last?.seq ?? 0)) await this.sign(this.anchor(head, frontier ?? (await this.frontierAt(head.seq))));
      })
      .catch((err: Error) => {
        this.covered = this.last?.seq ?? 0;
        this.failing = { message: err.message, atMs: Date.now() };
        this.logger.error("chron checkpoint failed", { error: err.message, seq: head.seq });
      });
  }

  private async sign(record: Anchor): Promise<Checkpoint> {
    const key = this.keys.current();
    const now = new Date();
    const claims: CheckpointClaims = { sequence: record.seq, hash: record.hash, timestamp: now.toISOString(), count: record.seq, root: record.root };
    const jws = jwt.sign(claims, key.privateKey, { algorithm: key.alg, keyid: key.kid, noTimestamp: true });
    const checkpoint: Checkpoint = { seq: record.seq, hash: record.hash, tsMs: now.getTime(), count: record.seq, kid: key.kid, jws, frontier: record.frontier };
    await this.store.insertCheckpoint(checkpoint);
    if (!this.last || checkpoint.seq > this.last.seq) this.last = checkpoint;
    this.failing = null;
    // What was committed after this checkpoint's record waits from now (a slight underestimate).
    this.unsignedSinceMs = (this.head?.seq ?? 0) > this.last.seq ? Date.now() : null;
    this.covered = Math.max(this.covered, checkpoint.seq);
    return checkpoint;
  }
}
