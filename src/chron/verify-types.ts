// What a verification of Chron reports, and what it checks with: shared by the verifier, its
// cursors and row checks, and the routes.
import type { ChronKeyLookup, ChronSigner } from "./signer";
import type { RemoteWitnessStatus } from "./remote-witness";

/** One anomaly verification found. */
export interface VerifyProblem {
  seq: number;
  problem: string;
  expected?: string;
  found?: string;
  /** Set for a caller confined to one organisation when the record is another organisation's: nothing of it is shown. */
  organization?: "other";
}

export interface VerifyResult {
  valid: boolean;
  /** Records checked: for a caller confined to one organisation, that organisation's records. */
  checked: number;
  /** The last record checked (the caller's organisation's last, when confined). */
  head: { seq: number; hash: string } | null;
  /** Signed checkpoints checked, and the last of them. */
  checkpoints: { checked: number; last: { seq: number; hash: string } | null };
  /** The first anomaly, the same as problems[0]. */
  first_bad?: VerifyProblem;
  /** Every anomaly found, first one first, at most MAX_PROBLEMS: one broken record hides nothing after it. */
  problems: VerifyProblem[];
  /** How many anomalies there were in all (more than `problems` holds when it was cut). */
  problem_count: number;
  /** Present when the caller is confined to one organisation. */
  scope?: { organization_id: string };
  /** The witness log the chain was held against: how many of its heads matched a stored record, and its last head. */
  witness?: { heads_checked: number; last: { tree_size: number; root: string; timestamp: string } | null; remote?: RemoteWitnessStatus };
}

export interface ConsistencyResult {
  first: number;
  second: number;
  first_root: string;
  second_root: string;
  /** RFC 9162 consistency proof, hex node hashes bottom up. */
  proof: string[];
  /** The checkpoints (signed tree heads) at those sizes, where CLAIIM signed one. */
  checkpoints: { first: SignedHead | null; second: SignedHead | null };
}

export interface SignedHead {
  seq: number;
  hash: string;
  kid: string;
  jws: string;
}

/** What verification checks signatures, tags and the witness with. */
export interface VerifyContext {
  keys: ChronKeyLookup;
  /** Checks the writer's tags; without it (service tests), tags are not checked. */
  signer?: Pick<ChronSigner, "kid" | "tag">;
  /** The local witness log; none: the chain is checked against its checkpoints alone. */
  witnessFile?: string | null;
  remoteWitness?: () => RemoteWitnessStatus | null;
}

/** Anomalies listed in a verification report; the count goes on past it. */
export const MAX_PROBLEMS = 100;

/** What a verification report may show, for a caller that sees everything or one organisation. */
export interface VerifyScope {
  orgId: string | null;
}
