import type { ChainHead, ChronRow } from "./record";

export interface ChronFilter {
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
  /** Appends rows in one transaction: all of them or none. */
  append(rows: ChronRow[]): Promise<void>;
  /** Rows matching the filter with seq > afterSeq, ascending, at most `limit`. */
  list(filter: ChronFilter, afterSeq: number, limit: number): Promise<ChronRow[]>;
}
