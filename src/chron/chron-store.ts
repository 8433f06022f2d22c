import type { Tx } from "../db/database";
import type { ChainHead, ChronContent, ChronRow } from "./record";

/**
 * A state change that must commit together with its Chron records, or not at all. It runs inside
 * the same database transaction, through the Prisma transaction client it is given.
 */
export type Effect = (tx: Tx) => Promise<void>;

export interface ChronFilter {
  kind?: string;
  orgId?: string;
  agentId?: string;
  ownerId?: string;
  decision?: string;
  fromMs?: number;
  toMs?: number;
}

/** Thrown when an append collides with a row another writer appended first. */
export class ChronConflictError extends Error {}

export interface ChronStore {
  head(): Promise<ChainHead | null>;
  /** Appends rows, and applies the effect, in one transaction: all of it or none. */
  append(rows: ChronRow[], effect?: Effect): Promise<void>;
  /** Rows matching the filter with seq > afterSeq, ascending, at most `limit`. */
  list(filter: ChronFilter, afterSeq: number, limit: number): Promise<ChronRow[]>;
}

/** Records contents in Chron, with the state change they describe when there is one (ChronWriter.commit). */
export type Recorder = (contents: ChronContent[], effect?: Effect) => Promise<ChronRow[]>;
