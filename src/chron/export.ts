import { stringify } from "csv-stringify/sync";
import { canonicalize, sha256Hex } from "../lib/canonical";
import { PayloadTooLargeError, ServiceUnavailableError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import type { Checkpoint, ChronFilter, ChronStore, Recorder } from "./chron-store";
import { verifyCheckpoint } from "./checkpoints";
import { MerkleFrontier, MerkleTree } from "./merkle";
import { INTERACTIVE, LiveWork, Pacer } from "../lib/pacer";
import type { ChronService } from "./chron-service";
import type { Checkpointer } from "./checkpoints";
import { GENESIS_HASH, newEvent, toRecord } from "./record";
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
  format_version: 1;
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

const PAGE = 1000;

/** What the header's signature covers. */
export function headerDigest(header: ExportHeader): string {
  const { signature: _signature, ...rest } = header;
  return sha256Hex(canonicalize(rest));
}

/**
 * Chron exports for compliance staff: a contiguous range of the chain, streamed (NDJSON, CSV, or a
 * JSON envelope for small ranges), with a header that lets an auditor check every record offline:
 * the hash each record chains from, and the signed checkpoints in the range, the last of them at
 * the range's last record (signed for the export if the periodic ones do not fall there, after
 * CLAIIM has verified the chain up to it). The export itself is recorded in Chron first.
 */
export class ChronExporter {
  constructor(
    private readonly store: ChronStore,
    private readonly chron: ChronService,
    private readonly checkpointer: Checkpointer,
    private readonly record: Recorder,
    private readonly jsonMax: number,
    private readonly logger: Logger,
    /** Reading the chain for a Merkle tree gives way to live decisions (see Pacer). */
    private readonly live: LiveWork = new LiveWork(),
  ) {}

  async prepare(
    range: ExportRange,
    selection: ExportSelection,
    format: ExportFormat,
    actor: Actor,
    filters: Record<string, string | number>,
  ): Promise<{ header: ExportHeader; body: AsyncGenerator<string> }> {
    const merkle = Object.values(selection).some((v) => v !== undefined);
    const head = await this.store.head();
    let tree: MerkleTree | null = null;
    let treeHead: ExportHeader["tree_head"] = null;
    let upTo = head?.seq ?? 0;
    if (merkle && head) {
      ({ tree, treeHead } = await this.treeAt(head.seq));
      upTo = head.seq;
    }
    const bounds = head ? await this.store.bounds({ ...range, ...selection, toSeq: Math.min(range.toSeq ?? upTo, upTo) }) : null;
    const first = bounds?.first ?? null;
    const last = bounds?.last ?? null;
    const count = bounds ? (merkle ? bounds.count : last! - first! + 1) : 0;
    if (format === "json" && count > this.jsonMax) {
      throw new PayloadTooLargeError("export_too_large_for_json", `${count} records are more than a JSON report holds (${this.jsonMax}); export them with format=ndjson, which streams`);
    }
    let prevHash: string | null = null;
    let checkpoints: Checkpoint[] = [];
    if (bounds && !merkle) {
      const firstRow = (await this.store.list({}, first! - 1, 1))[0];
      prevHash = firstRow.prevHash;
      checkpoints = await this.anchor(first!, last!);
    }
    const header: ExportHeader = {
      chron_export: "header",
      format_version: 1,
      exported_by: actor,
      exported_at: new Date().toISOString(),
      filters,
      selection: merkle ? "merkle" : "contiguous",
      count,
      first_seq: first,
      last_seq: last,
      prev_hash: prevHash,
      checkpoints: checkpoints.map((c) => ({ seq: c.seq, hash: c.hash, kid: c.kid, jws: c.jws })),
      tree_head: treeHead,
      jwks: "/.well-known/jwks.json",
    };
    header.signature = this.checkpointer.signDigest(headerDigest(header));
    await this.record([
      newEvent({
        type: "chron.exported",
        actor,
        subject: { type: "chron", id: first === null ? "empty" : `${first}-${last}`, name: format },
        before: null,
        after: { format, selection: header.selection, filters, count, first_seq: first, last_seq: last },
      }),
    ]);
    this.logger.info("chron export", { format, selection: header.selection, count, first_seq: first, last_seq: last });
    return { header, body: this.body(header, format, { ...range, ...selection }, tree) };
  }

  /**
   * The Merkle tree of records 1..seq, rebuilt from the stored hashes, and its signed head: the
   * checkpoint at seq (signed now if needed, after checking the chain up to it). A tree that does
   * not rebuild to the signed root means the stored trail was changed: nothing is exported.
   */
  private async treeAt(seq: number): Promise<{ tree: MerkleTree; treeHead: NonNullable<ExportHeader["tree_head"]> }> {
    const [checkpoint] = (await this.anchor(seq, seq)).slice(-1);
    // After retention the tree starts from the frontier stored with the checkpoint before what is kept.
    const kept = await this.store.bounds({});
    let prefix = new MerkleFrontier();
    let after = 0;
    if (kept && kept.first > 1) {
      const anchor = (await this.store.checkpoints(kept.first - 2, 1))[0];
      if (anchor?.seq !== kept.first - 1 || !anchor.frontier) throw new ServiceUnavailableError("chron_broken", "records were pruned without the retention checkpoint that anchors the rest");
      prefix = MerkleFrontier.parse(anchor.frontier);
      after = anchor.seq;
    }
    const hashes: string[] = [];
    const pacer = new Pacer(this.live, INTERACTIVE);
    while (after < seq) {
      const rows = await this.store.list({ toSeq: seq }, after, 1000);
      if (rows.length === 0) break;
      for (const row of rows) hashes.push(row.hash);
      after = rows[rows.length - 1].seq;
      await pacer.tick();
    }
    const tree = await MerkleTree.build(hashes, prefix, () => pacer.tick());
    const signed = verifyCheckpoint(checkpoint.jws, (kid) => this.checkpointer.keyFor(kid)).root;
    if (tree.size !== seq || signed !== tree.root()) {
      throw new ServiceUnavailableError("chron_broken", `the stored records do not rebuild the Merkle root signed at checkpoint ${seq}; nothing is exported`);
    }
    return { tree, treeHead: { tree_size: seq, root: signed, checkpoint: { seq: checkpoint.seq, hash: checkpoint.hash, kid: checkpoint.kid, jws: checkpoint.jws } } };
  }

  /** The signed checkpoints within first..last, with one at `last`, signed after checking the chain up to it. */
  private async anchor(first: number, last: number): Promise<Checkpoint[]> {
    const inRange: Checkpoint[] = [];
    let before: Checkpoint | null = null;
    for (let after = 0; ; ) {
      const page = await this.store.checkpoints(after, 500);
      for (const cp of page) {
        if (cp.seq < first) before = cp;
        else if (cp.seq <= last) inRange.push(cp);
      }
      if (page.length < 500 || page[page.length - 1].seq > last) break;
      after = page[page.length - 1].seq;
    }
    if (inRange[inRange.length - 1]?.seq === last) return inRange;
    const from = inRange[inRange.length - 1] ?? before;
    const broken = await this.chron.verifySegment((from?.seq ?? 0) + 1, last, from?.hash ?? GENESIS_HASH);
    if (broken) {
      throw new ServiceUnavailableError("chron_broken", `the chain does not verify at record ${broken.seq} (${broken.problem}); CLAIIM will not sign a checkpoint over it`);
    }
    const lastRow = (await this.store.list({}, last - 1, 1))[0];
    return [...inRange, await this.checkpointer.at({ seq: lastRow.seq, hash: lastRow.hash })];
  }

  private async *body(header: ExportHeader, format: ExportFormat, filter: ChronFilter, tree: MerkleTree | null): AsyncGenerator<string> {
    const line = (v: unknown) => (format === "csv" ? `# ${JSON.stringify(v)}\n` : `${JSON.stringify(v)}\n`);
    const proof = (seq: number) => (tree ? { leaf_index: seq - 1, audit_path: tree.proof(seq - 1) } : undefined);
    yield format === "json" ? `{"header":${JSON.stringify(header)},"records":[` : line(header);
    if (format === "csv") yield stringify([["seq", "kind", "id", "timestamp", "prev_hash", "hash", "content", ...(tree ? ["merkle_proof"] : [])]]);
    let written = 0;
    let lastHash: string | null = null;
    try {
      for (let after = (header.first_seq ?? 1) - 1; header.last_seq !== null && after < header.last_seq; ) {
        const rows = await this.store.list(tree ? { ...filter, toSeq: header.last_seq } : { toSeq: header.last_seq }, after, PAGE);
        if (rows.length === 0) break;
        for (const row of rows) {
          const p = proof(row.seq);
          if (format === "csv") {
            yield stringify([[row.seq, row.kind, row.id, new Date(row.tsMs).toISOString(), row.prevHash, row.hash, row.content, ...(p ? [JSON.stringify(p)] : [])]]);
          } else {
            const record = p ? { ...toRecord(row), merkle_proof: p } : toRecord(row);
            yield `${format === "json" && written > 0 ? "," : ""}${JSON.stringify(record)}${format === "json" ? "" : "\n"}`;
          }
          written += 1;
          lastHash = row.hash;
        }
        after = rows[rows.length - 1].seq;
      }
      if (written !== header.count) throw new Error(`expected ${header.count} records, read ${written}`);
      const trailer: ExportTrailer = { chron_export: "trailer", count: written, last_seq: header.last_seq, last_hash: lastHash, complete: true };
      yield format === "json" ? `],"trailer":${JSON.stringify(trailer)}}` : line(trailer);
    } catch (err) {
      // WARNING: never end a failed export silently: the reader must see that it is incomplete.
      this.logger.error("chron export failed midway", { error: (err as Error).message, records_written: written });
      const trailer: ExportError = { chron_export: "error", message: (err as Error).message, records_written: written, complete: false };
      yield format === "json" ? `],"trailer":${JSON.stringify(trailer)}}` : line(trailer);
    }
  }
}
