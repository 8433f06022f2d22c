import type { Tx } from "../db/database";
import { ServiceUnavailableError } from "../lib/errors";
import type { ChainHead, ChronContent, ChronRow } from "./record";

/**
 * A state change that must commit together with its Chron records, or not at all. It runs inside
 * the same database transaction, through the Prisma transaction client it is given.
 */
export type Effect = (tx: Tx) => Promise<void>;

/**
 * Thrown by an effect that finds, inside its transaction, that its change no longer applies (a
 * conditional update another process won): the transaction rolls back and the caller answers why.
 * Chron itself is not failing, so the writer neither logs an error nor reports itself unhealthy.
 */
export class EffectRefused extends Error {}

export interface ChronFilter {
  kind?: string;
  fromSeq?: number;
  toSeq?: number;
  orgId?: string;
  agentId?: string;
  ownerId?: string;
  decision?: string;
  action?: string;
  policyVersion?: number;
  fromMs?: number;
  toMs?: number;
}

/** Thrown by the decision path and the approval gate when Chron cannot record: nothing was decided. */
export function chronUnavailable(): ServiceUnavailableError {
  return new ServiceUnavailableError("chron_unavailable", "the decision could not be recorded in Chron, so none was made; retry later");
}

/** Thrown when an append collides with a row another writer appended first. */
export class ChronConflictError extends Error {}

/**
 * Thrown when a record claims an Idempotency-Key that an earlier record of its agent holds (the
 * database's unique index on the key): another process, or this one before it forgot the key,
 * decided under it first. Nothing was appended; the caller answers with that record instead.
 */
export class IdempotencyKeyTaken extends Error {}

/**
 * The PostgreSQL advisory lock every CLAIIM process takes (pg_advisory_xact_lock) to append to
 * Chron: one chain per database, so one key. (SQLite has one write lock per database already.)
 */
export const WRITERS_LOCK = 0x43684c41494d; // "ChLAIM"

/** A signed statement that record `seq` of the chain has `hash` (see Checkpointer). */
export interface Checkpoint {
  seq: number;
  hash: string;
  tsMs: number;
  count: number;
  kid: string;
  /** Compact JWS over {sequence, hash, timestamp, count, root}. */
  jws: string;
  /** The Merkle frontier at seq (MerkleFrontier.serialize), null for checkpoints that predate it. */
  frontier: string | null;
}

export interface DecisionCount {
  day: string;
  agentId: string | null;
  ownerId: string | null;
  action: string | null;
  policyVersion: number | null;
  decision: string;
  count: number;
}

export interface EventCount {
  day: string;
  type: string;
  count: number;
}

/** What a record's place in the chain and in the Merkle tree needs: no content. */
export type ChronLink = Pick<ChronRow, "seq" | "prevHash" | "hash" | "tag">;

export interface ChronStore {
  head(): Promise<ChainHead | null>;
  /** First and last seq, and how many records, of those matching the filter; null when none does. */
  bounds(filter: ChronFilter): Promise<{ first: number; last: number; count: number } | null>;
  insertCheckpoint(checkpoint: Checkpoint): Promise<void>;
  /** Checkpoints with seq > afterSeq, ascending, at most `limit`. */
  checkpoints(afterSeq: number, limit: number): Promise<Checkpoint[]>;
  lastCheckpoint(): Promise<Checkpoint | null>;
  /** The last checkpoint at or before `seq`, if any. */
  checkpointAtOrBefore(seq: number): Promise<Checkpoint | null>;
  /**
   * Retention: deletes records up to `upToSeq` and the checkpoints before it, inside the effect's
   * transaction, through the database's delete guard.
   */
  prune(upToSeq: number, tx: Tx): Promise<number>;
  /** How many decisions were made under each policy version (null: none was active), of one organisation or of all. */
  decisionsByPolicyVersion(orgId?: string): Promise<{ version: number | null; count: number }[]>;
  /** Decisions matching the filter, counted per UTC day, agent, owner, action, policy version and outcome. */
  decisionCounts(filter: ChronFilter): Promise<DecisionCount[]>;
  /** Events of these types matching the filter, counted per UTC day and type. */
  eventCounts(filter: ChronFilter, types: readonly string[]): Promise<EventCount[]>;
  /**
   * Appends under the database's write lock, shared by every CLAIIM process on the database (see
   * WRITERS_LOCK): inside the transaction, with the lock held, applies the effect, reads the
   * chain's last record, and inserts the rows `build` seals after it; all of it or none. Returns
   * the rows inserted.
   *
   * WARNING: the head is read only after the lock is taken, in the same transaction as the insert:
   * that alone keeps several writers from taking the same seq. `build` runs while every other
   * writer waits, so it must be quick (hashing and tagging only, see sealPrepared).
   */
  append(build: (head: ChronRow | null) => ChronRow[], effect?: Effect): Promise<ChronRow[]>;
  /**
   * Rows matching the filter with seq > afterSeq, at most `limit`, in chain order (`asc`) or
   * newest first (`desc`; bound it from above with `filter.toSeq`).
   */
  list(filter: ChronFilter, afterSeq: number, limit: number, order?: "asc" | "desc"): Promise<ChronRow[]>;
  /** The last `limit` rows matching the filter, ascending. */
  latest(filter: ChronFilter, limit: number): Promise<ChronRow[]>;
  /** The record that claims `key` for agent `agentId` (its idempotency_key column), if one does. */
  claimOf(agentId: string, key: string): Promise<ChronRow | null>;
  /** How the records with seq > afterSeq and ≤ upTo link, at most `limit`, in chain order: without their content. */
  links(afterSeq: number, upTo: number, limit: number): Promise<ChronLink[]>;
}

/** Records contents in Chron, with the state change they describe when there is one (ChronWriter.commit). */
export type Recorder = (contents: ChronContent[], effect?: Effect) => Promise<ChronRow[]>;


/**
 * Pages of the records matching `filter`, in chain order. A time window is first turned into the
 * range of sequence numbers it spans (one indexed query), and pages are read along the sequence,
 * with the time bounds applied to each row: reading page after page by time would make the
 * database sort the whole window again for every page.
 */
export async function* scanRecords(
  store: Pick<ChronStore, "list" | "bounds">,
  filter: ChronFilter,
  pageSize: number,
  /** `store.bounds(filter)`, when the caller has it already. */
  bounds?: Awaited<ReturnType<ChronStore["bounds"]>>,
): AsyncGenerator<ChronRow[]> {
  const { fromMs, toMs, ...rest } = filter;
  let bySeq = filter;
  if (fromMs !== undefined || toMs !== undefined) {
    const span = bounds === undefined ? await store.bounds(filter) : bounds;
    if (!span) return;
    bySeq = { ...rest, fromSeq: Math.max(span.first, rest.fromSeq ?? 0), toSeq: Math.min(span.last, rest.toSeq ?? Number.MAX_SAFE_INTEGER) };
  }
  const inWindow = (r: ChronRow) => (fromMs === undefined || r.tsMs >= fromMs) && (toMs === undefined || r.tsMs < toMs);
  let after = 0;
  for (;;) {
    const rows = await store.list(bySeq, after, pageSize);
    if (rows.length) yield rows.filter(inWindow);
    if (rows.length < pageSize) return;
    after = rows[rows.length - 1].seq;
  }
}

/**
 * Stored records after `after`, up to `upTo` (inclusive; to the head when omitted), page by page
 * in chain order: the one way Chron's own passes (verification, proofs, exports, the Merkle tree)
 * read the chain.
 */
export function rowsAfter(store: Pick<ChronStore, "list" | "bounds">, after: number, upTo?: number, pageSize = 1000): AsyncGenerator<ChronRow[]> {
  return scanRecords(store, upTo === undefined ? { fromSeq: after + 1 } : { fromSeq: after + 1, toSeq: upTo }, pageSize);
}

/**
 * The links of the records after `after`, up to `upTo` (inclusive), page by page in chain order:
 * for the passes that need only hashes, tags and sequence (the Merkle tree, read back or caught up
 * with), which then do not read the records' content.
 */
export async function* linksAfter(store: Pick<ChronStore, "links">, after: number, upTo: number, pageSize = 5000): AsyncGenerator<ChronLink[]> {
  for (;;) {
    if (after >= upTo) return;
    const links = await store.links(after, upTo, pageSize);
    if (links.length) yield links;
    if (links.length < pageSize) return;
    after = links[links.length - 1].seq;
  }
}

/**
 * Where the kept chain starts after retention. null: nothing was pruned. Otherwise `first`, the
 * first record kept, and the retention checkpoint at first - 1, which carries the Merkle frontier
 * of what was archived; `checkpoint` is null when none anchors what is left (records deleted by
 * hand). Each caller decides what a missing anchor means for it (a problem named, or a refusal).
 */
export async function retentionAnchor(store: Pick<ChronStore, "bounds" | "checkpointAtOrBefore">): Promise<{ first: number; checkpoint: Checkpoint | null } | null> {
  const kept = await store.bounds({});
  if (!kept || kept.first <= 1) return null;
  const at = await store.checkpointAtOrBefore(kept.first - 1);
  return { first: kept.first, checkpoint: at?.seq === kept.first - 1 ? at : null };
}
