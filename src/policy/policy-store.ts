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
  setShadow(shadow: ShadowState | null, tx: Tx): Promise<void>;
}
