import { createPublicKey, type KeyObject } from "node:crypto";
import jwt from "jsonwebtoken";
import type { Logger } from "../lib/logger";
import type { SigningKeys } from "../identity/signing-keys";
import type { Checkpoint, ChronStore } from "./chron-store";
import type { ChainHead } from "./record";

/** What a checkpoint's JWS says. */
export interface CheckpointClaims {
  sequence: number;
  hash: string;
  timestamp: string;
  count: number;
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

/**
 * Signs checkpoints: every `everyRecords` records or every `everySeconds` seconds, whichever comes
 * first (and only when the chain has grown), and on demand at a given record (for exports). A
 * checkpoint signs {sequence, hash, timestamp, count} as a compact JWS with the Chron key, whose
 * public half is in the JWKS; once signed, a rewritten chain can no longer match it.
 */
export class Checkpointer {
  private last: Checkpoint | null = null;
  private head: ChainHead | null = null;
  private pending: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: ChronStore,
    private readonly keys: SigningKeys,
    private readonly policy: CheckpointPolicy,
    private readonly logger: Logger,
  ) {}

  async start(head: ChainHead | null): Promise<void> {
    this.last = await this.store.lastCheckpoint();
    this.head = head;
    this.timer = setInterval(() => this.due(true), this.policy.everySeconds * 1000);
    this.timer.unref();
    this.due(false);
  }

  stop(): Promise<unknown> {
    if (this.timer) clearInterval(this.timer);
    return this.idle();
  }

  /** Settles once every checkpoint already due is written. */
  idle(): Promise<unknown> {
    return this.pending;
  }

  /** Called after every Chron commit. */
  committed(head: ChainHead): void {
    this.head = head;
    this.due(false);
  }

  /** Signs a checkpoint at exactly this record, unless one exists; serialised with the periodic ones. */
  at(record: ChainHead): Promise<Checkpoint> {
    const next = this.pending.then(async () => {
      const existing = (await this.store.checkpoints(record.seq - 1, 1))[0];
      if (existing?.seq === record.seq) return existing;
      return this.sign(record);
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

  private due(timer: boolean): void {
    const head = this.head;
    if (!head || head.seq <= (this.last?.seq ?? 0)) return;
    if (!timer && head.seq - (this.last?.seq ?? 0) < this.policy.everyRecords) return;
    this.pending = this.pending
      .then(async () => {
        if (head.seq > (this.last?.seq ?? 0)) await this.sign(head);
      })
      .catch((err: Error) => this.logger.error("chron checkpoint failed", { error: err.message, seq: head.seq }));
  }

  private async sign(record: ChainHead): Promise<Checkpoint> {
    const key = this.keys.current();
    const now = new Date();
    const claims: CheckpointClaims = { sequence: record.seq, hash: record.hash, timestamp: now.toISOString(), count: record.seq };
    const jws = jwt.sign(claims, key.privateKey, { algorithm: key.alg, keyid: key.kid, noTimestamp: true });
    const checkpoint: Checkpoint = { seq: record.seq, hash: record.hash, tsMs: now.getTime(), count: record.seq, kid: key.kid, jws };
    await this.store.insertCheckpoint(checkpoint);
    if (!this.last || checkpoint.seq > this.last.seq) this.last = checkpoint;
    return checkpoint;
  }
}
