import { stringify } from "csv-stringify/sync";
import { PayloadTooLargeError, ServiceUnavailableError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import { retentionAnchor, rowsAfter, scanRecords, type Checkpoint, type ChronFilter, type ChronStore, type Recorder } from "./chron-store";
import { MerkleFrontier, MerkleTree } from "./merkle";
import { INTERACTIVE, LiveWork, Pacer } from "../lib/pacer";
import { TagTrail, UNVOUCHED } from "./row-checks";
import type { ChronVerifier } from "./verification";
import type { Checkpointer } from "./checkpoints";
import { ChronBrokenError } from "./stored-tree";
import { ChronHaltedError } from "./chron-writer";
import { GENESIS_HASH, newEvent, type ChronContent, type ChronRow } from "./record";
import type { Actor } from "../shared/principal";
import { tagVerdict, type ChronSigner } from "./signer";
import type { WitnessedHead } from "./witness";
import { verifyCheckpoint } from "./checkpoint-jws";
import { ExportError, ExportFormat, ExportHeader, ExportProblemLine, ExportRange, ExportSelection, ExportTrailer, headerDigest } from "./export-format";

const PAGE = 1000;

export interface KnownBeyond {
  writerHead?: () => { seq: number; hash: string } | null;
  lastWitnessed?: () => WitnessedHead | null;
  signer?: Pick<ChronSigner, "kid" | "tag">;
}

/** What the header's signature covers. */
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
    private readonly verifier: ChronVerifier,
    private readonly checkpointer: Checkpointer,
    private readonly record: Recorder,
    private readonly jsonMax: number,
    private readonly logger: Logger,
    /** Reading the chain for a Merkle tree gives way to live decisions (see Pacer). */
    private readonly live: LiveWork = new LiveWork(),
    /** What the server knows beyond the stored chain: its writer's head, the witness's last head, and the tags' key. */
    private readonly known: KnownBeyond = {},
  ) {}

  async prepare(
    range: ExportRange,
    selection: ExportSelection,
    format: ExportFormat,
    actor: Actor,
    filters: Record<string, string | number>,
  ): Promise<{ header: ExportHeader; body: AsyncGenerator<string> }> {
    const merkle = Object.values(selection).some((v) => v !== undefined);
    // What was committed and witnessed before the export began must all be in it (when it has no upper bound).
    const beyond = { writer: this.known.writerHead?.() ?? null, witnessed: this.known.lastWitnessed?.() ?? null };
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
    // What is stored: a record missing from a range is for the verifier to name, not a short export.
    const count = bounds?.count ?? 0;
    if (format === "json" && count > this.jsonMax) {
      throw new PayloadTooLargeError("export_too_large_for_json", `${count} records are more than a JSON report holds (${this.jsonMax}); export them with format=ndjson, which streams`);
    }
    let prevHash: string | null = null;
    let checkpoints: Checkpoint[] = [];
    let prefix: ExportHeader["prefix"] = null;
    if (bounds && !merkle) {
      const firstRow = (await this.store.list({}, first! - 1, 1))[0];
      prevHash = firstRow.prevHash;
      checkpoints = await this.anchor(first!, last!);
      prefix = JSON.parse((first! > 1 ? await this.checkpointer.frontierBefore(first!) : new MerkleFrontier()).serialize()) as ExportHeader["prefix"];
    }
    const header: ExportHeader = {
      chron_export: "header",
      format_version: 2,
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
      ...(merkle ? {} : { prefix }),
      jwks: "/.well-known/jwks.json",
    };
    try {
      await this.record([
        newEvent({
          type: "chron.exported",
          actor,
          subject: { type: "chron", id: first === null ? "empty" : `${first}-${last}`, name: format },
          before: null,
          after: { format, selection: header.selection, filters, count, first_seq: first, last_seq: last },
        }),
      ]);
    } catch (err) {
      // WARNING: a Chron halted on a record CLAIIM did not write can record nothing; its evidence
      // must still be exportable. The header says so, and the verifier fails on it.
      if (!(err instanceof ChronHaltedError)) throw err;
      header.chron_halted = { seq: err.seq, problem: err.problem };
    }
    header.signature = await this.checkpointer.signDigest(headerDigest(header));
    this.logger.info("chron export", { format, selection: header.selection, count, first_seq: first, last_seq: last, halted: header.chron_halted?.seq ?? null });
    const open = !filters.to && !filters.to_seq;
    return { header, body: this.body(header, format, { ...range, ...selection }, tree, open ? beyond : null) };
  }

  /**
   * The Merkle tree of records 1..seq, rebuilt from the stored hashes, and its signed head: the
   * checkpoint at seq (signed now if needed, after checking the chain up to it). A tree that does
   * not rebuild to the signed root means the stored trail was changed: nothing is exported.
   */
  private async treeAt(seq: number): Promise<{ tree: MerkleTree; treeHead: NonNullable<ExportHeader["tree_head"]> }> {
    const [checkpoint] = (await this.anchor(seq, seq)).slice(-1);
    // After retention the tree starts from the frontier stored with the checkpoint before what is kept.
    const kept = await retentionAnchor(this.store);
    let prefix = new MerkleFrontier();
    let after = 0;
    if (kept) {
      const anchor = kept.checkpoint;
      if (!anchor?.frontier) throw new ServiceUnavailableError("chron_broken", "records were pruned without the retention checkpoint that anchors the rest");
      prefix = MerkleFrontier.parse(anchor.frontier);
      after = anchor.seq;
    }
    const hashes: string[] = [];
    const pacer = new Pacer(this.live, INTERACTIVE);
    for await (const rows of rowsAfter(this.store, after, seq)) {
      for (const row of rows) hashes.push(row.hash);
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
    // WARNING: never sign over what does not verify: the export then goes out without a checkpoint
    // at its end (the verifier says so) and with the problems beside the records.
    const broken = await this.verifier.verifySegment((from?.seq ?? 0) + 1, last, from?.hash ?? GENESIS_HASH, true);
    if (broken) {
      this.logger.warn("chron export: no checkpoint signed at its end, the chain does not verify", { seq: broken.seq, problem: broken.problem });
      return inRange;
    }
    const lastRow = (await this.store.list({}, last - 1, 1))[0];
    try {
      return [...inRange, await this.checkpointer.at({ seq: lastRow.seq, hash: lastRow.hash })];
    } catch (err) {
      if (!(err instanceof ChronBrokenError)) throw err;
      this.logger.warn("chron export: no checkpoint signed at its end", { error: err.message });
      return inRange;
    }
  }

  private async *body(header: ExportHeader, format: ExportFormat, filter: ChronFilter, tree: MerkleTree | null, beyond: Beyond | null): AsyncGenerator<string> {
    const line = (v: unknown) => (format === "csv" ? `# ${JSON.stringify(v)}\n` : `${JSON.stringify(v)}\n`);
    const proof = (seq: number) => (tree ? { leaf_index: seq - 1, audit_path: tree.proof(seq - 1) } : undefined);
    // The JSON report cannot interleave problems with its records: they follow the records.
    const later: ExportProblemLine[] = [];
    const problem = (p: ExportProblemLine) => {
      if (format === "json") {
        later.push(p);
        return "";
      }
      return line(p);
    };
    // Records after the last checkpoint of a contiguous export are vouched for by their tags alone.
    const lastSigned = header.checkpoints[header.checkpoints.length - 1]?.seq ?? 0;
    const tags = new TagTrail(this.known.signer);
    yield format === "json" ? `{"header":${JSON.stringify(header)},"records":[` : line(header);
    if (format === "csv") yield stringify([["seq", "kind", "id", "timestamp", "prev_hash", "hash", "content", ...(tree ? ["merkle_proof"] : [])]]);
    let written = 0;
    let lastHash: string | null = null;
    try {
      // A filtered export reads what matches; a whole one, every record of its range.
      const range = header.last_seq === null ? null : { ...(tree ? filter : {}), fromSeq: Math.max(header.first_seq ?? 1, (tree ? filter.fromSeq : undefined) ?? 1), toSeq: header.last_seq };
      for await (const rows of range ? scanRecords(this.store, range, PAGE) : []) {
        for (const row of rows) {
          // Parsed once: for the record as exported, and for the checks only the server can make.
          const content = JSON.parse(row.content) as ChronContent;
          const record = { seq: row.seq, ...content, prev_hash: row.prevHash, hash: row.hash };
          for (const p of this.rowProblems(row, content, !tree && row.seq > lastSigned, tree ? null : tags)) yield problem(p);
          const p = proof(row.seq);
          if (format === "csv") {
            yield stringify([[row.seq, row.kind, row.id, new Date(row.tsMs).toISOString(), row.prevHash, row.hash, row.content, ...(p ? [JSON.stringify(p)] : [])]]);
          } else {
            yield `${format === "json" && written > 0 ? "," : ""}${JSON.stringify(p ? { ...record, merkle_proof: p } : record)}${format === "json" ? "" : "\n"}`;
          }
          written += 1;
          lastHash = row.hash;
        }
      }
      if (written !== header.count) throw new Error(`expected ${header.count} records, read ${written}`);
      const missing = beyond ? missingAfter(tree ? tree.size : (header.last_seq ?? 0), beyond) : null;
      if (missing) yield problem(missing);
      const trailer: ExportTrailer = { chron_export: "trailer", count: written, last_seq: header.last_seq, last_hash: lastHash, complete: true };
      yield format === "json" ? `],"problems":${JSON.stringify(later)},"trailer":${JSON.stringify(trailer)}}` : line(trailer);
    } catch (err) {
      // WARNING: never end a failed export silently: the reader must see that it is incomplete.
      this.logger.error("chron export failed midway", { error: (err as Error).message, records_written: written });
      const trailer: ExportError = { chron_export: "error", message: (err as Error).message, records_written: written, complete: false };
      yield format === "json" ? `],"problems":${JSON.stringify(later)},"trailer":${JSON.stringify(trailer)}}` : line(trailer);
    }
  }

  /** What the server sees wrong with a row that the export cannot show: see ChronVerifier.storedRowProblems; unsigned rows must carry CLAIIM's tag. */
  private rowProblems(row: ChronRow, content: ChronContent, unsigned: boolean, tags: TagTrail | null): ExportProblemLine[] {
    const own = this.verifier.storedRowProblems(row, content);
    // Along a contiguous export, an untagged record after tagged ones is one CLAIIM did not write.
    const tagged = tags?.row(row);
    if (tagged && !own.some((p) => p.problem === tagged.problem)) own.push(tagged);
    const found = own.map((p) => ({ chron_export: "problem" as const, seq: p.seq, problem: p.problem }));
    const signer = this.known.signer;
    if (unsigned && signer && !found.length && tagVerdict(row.tag, row.hash, signer) !== "valid") {
      found.push({ chron_export: "problem", seq: row.seq, problem: UNVOUCHED });
    }
    return found;
  }

}

/** What the server knew when an export began. */
interface Beyond {
  writer: { seq: number; hash: string } | null;
  witnessed: WitnessedHead | null;
}

/** Records this server had committed, or the witness held a signed head for, when the export began, beyond its end (for an export without an upper bound). */
function missingAfter(end: number, beyond: Beyond): ExportProblemLine | null {
  const witnessed = beyond.witnessed;
  if (witnessed && witnessed.tree_size > end) {
    return { chron_export: "problem", seq: end + 1, problem: `missing: the witness holds a tree head of ${witnessed.tree_size} records signed at ${witnessed.timestamp}; records from ${end + 1} on are no longer stored` };
  }
  if (beyond.writer && beyond.writer.seq > end) return { chron_export: "problem", seq: end + 1, problem: `missing: this server committed records up to ${beyond.writer.seq}; those from ${end + 1} on are no longer stored` };
  return null;
}
