// The wire shapes of a Chron export (a public format: header, problem lines, trailer, error) and
// what the header's signature covers; shared by the exporter and the offline verifier.
import { canonicalize, sha256Hex } from "../lib/canonical";
import type { ChronFilter } from "./chron-store";
import type { Actor } from "../shared/principal";

export type ExportFormat = "ndjson" | "csv" | "json";

export interface ExportRange {
  fromMs?: number;
  toMs?: number;
  fromSeq?: number;
  toSeq?: number;
}

/** The report header: who exported what, when, and what an auditor needs to check it. */
export interface ExportHeader {
  chron_export: "header";
  /** 2 adds `prefix`, `chron_halted` and problem lines; a verifier of version 2 reads version 1 too. */
  format_version: 1 | 2;
  exported_by: Actor;
  exported_at: string;
  filters: Record<string, string | number>;
  /**
   * "contiguous": every record from first_seq to last_seq, checked by their hash chain.
   * "merkle": only the records matching the filters, each with an RFC 6962 inclusion proof
   * against the signed tree head.
   */
  selection: "contiguous" | "merkle";
  count: number;
  first_seq: number | null;
  last_seq: number | null;
  /** The hash the first record chains from (64 zeros for the chain's first record). */
  prev_hash: string | null;
  /** Contiguous: the signed checkpoints within the range; the last of them is at last_seq. */
  checkpoints: { seq: number; hash: string; kid: string; jws: string }[];
  /** Merkle: the tree of records 1..tree_size, whose root the checkpoint at tree_size signs. */
  tree_head: { tree_size: number; root: string; checkpoint: { seq: number; hash: string; kid: string; jws: string } } | null;
  /**
   * Contiguous: the RFC 6962 Merkle frontier of the records before first_seq ({size, nodes}), so
   * that the verifier can rebuild the root of every signed head in the range (and compare it with
   * the witness); the roots it rebuilds prove the frontier right.
   */
  prefix?: { size: number; nodes: (string | null)[] } | null;
  /**
   * Present when Chron had halted on a record CLAIIM did not write: the export could not be
   * recorded in Chron, and the chain cannot be trusted from that record on.
   */
  chron_halted?: { seq: number; problem: string };
  /** Where the keys that verify the checkpoints are published. */
  jwks: string;
  /**
   * A compact JWS, by the Chron key, of {header_sha256}: the SHA-256 of the RFC 8785 form of this
   * header without this field. It makes the header (who, when, which range) as tamper-evident as the records.
   */
  signature?: string;
}

/** What narrows an export to a selection; any of them makes it a Merkle export. */
export type ExportSelection = Pick<ChronFilter, "kind" | "orgId" | "agentId" | "ownerId" | "action" | "decision" | "policyVersion">;

/**
 * What the server found wrong with a record it exported, where the export alone cannot show it
 * (filter columns, the stored form, the writer's tag, records missing after the end): written
 * before the record it concerns (or before the trailer), so that the verifier reports it.
 */
export interface ExportProblemLine {
  chron_export: "problem";
  seq: number;
  problem: string;
}

export interface ExportTrailer {
  chron_export: "trailer";
  count: number;
  last_seq: number | null;
  last_hash: string | null;
  complete: true;
}

export interface ExportError {
  chron_export: "error";
  message: string;
  records_written: number;
  complete: false;
}

export function headerDigest(header: ExportHeader): string {
  const { signature: _signature, ...rest } = header;
  return sha256Hex(canonicalize(rest));
}
