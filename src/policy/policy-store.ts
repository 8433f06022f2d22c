import type { Tx } from "../db/database";

export interface StoredBundle {
  version: number;
  /** The version active when this one was published, if any. */
  parent: number | null;
  revision: string;
  digest: string;
  fileSha256: string;
  bundle: Buffer;
  sources: Record<string, string>;
  message: string;
  createdBy: string;
  createdAt: Date;
}

export type BundleSummary = Omit<StoredBundle, "bundle" | "sources">;

export interface PolicyState {
  activeVersion: number | null;
  activatedAt: Date | null;
  activatedBy: string | null;
  lastError: string | null;
  lastErrorAt: Date | null;
  shadow: ShadowState | null;
  /** The current shadow's evaluations stopped at a bound, by every process together (0 without a shadow). */
  shadowTrips: number;
}

/** Shadow mode: which version is evaluated beside the active one, since when, set by whom. */
export interface ShadowState {
  version: number;
  since: Date;
  by: string;
}

/** Writes take the transaction of the Chron commit that records them. */
export interface PolicyStore {
  latestVersion(): Promise<number>;
  /** Inserts a new version; throws ConflictError when that version number is taken. */
  insert(bundle: StoredBundle, tx: Tx): Promise<void>;
  get(version: number): Promise<StoredBundle | null>;
  list(): Promise<BundleSummary[]>;
  state(): Promise<PolicyState>;
  setActive(version: number, by: string, at: Date, tx: Tx): Promise<void>;
  setError(message: string, at: Date, tx: Tx): Promise<void>;
  /** Sets or clears the shadow; its trips start again from 0. */
  setShadow(shadow: ShadowState | null, tx: Tx): Promise<void>;
  /**
   * Adds one to the trips of shadow `version`, in one statement, so that processes counting at once
   * each get a count of their own; returns the count after it, or null when `version` is no longer
   * the shadow.
   */
  countShadowTrip(version: number): Promise<number | null>;
}
