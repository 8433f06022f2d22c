import { MerkleFrontier, verifyInclusion } from "./merkle";
import { recordHash, type ChronContent } from "./record";
import type { ChronKeyLookup } from "./signer";
import { WitnessHeads, type WitnessLine } from "./witness";
import { verifyCheckpoint, verifyDigestSignature } from "./checkpoint-jws";
import { Bad, type ExportItem } from "./export-items";
import { type ExportHeader, headerDigest } from "./export-format";

/** True when `hash` is the record's hash; false too when the content cannot be canonicalised (nested too deep). */
function hashes(content: Record<string, unknown>, seq: number, prevHash: string, hash: string): boolean {
  try {
    return recordHash(content as unknown as ChronContent, seq, prevHash) === hash;
  } catch {
    return false;
  }
}

export interface ExportProblem {
  line: number | null;
  seq: number | null;
  message: string;
}

export interface ExportReport {
  ok: boolean;
  records: number;
  first_seq: number | null;
  last_seq: number | null;
  checkpoints: number;
  /** With a witness log: how many of its heads were checked against the export, and its last head. */
  witness?: { heads: number; checked: number; last_tree_size: number | null };
  /** The first problem, the same as problems[0]. */
  problem?: ExportProblem;
  /** Every problem found, first one first (at most MAX_PROBLEMS): a bad record does not stop the check. */
  problems: ExportProblem[];
  problem_count: number;
}

/** Problems listed in a report; the count goes on past it. */
const MAX_PROBLEMS = 100;

export interface VerifyOptions {
  /** A witness log (readWitnessLog), to hold the export against. */
  witness?: AsyncIterable<WitnessLine>;
}

/**
 * Checks an export on its own, trusting neither the server nor its database: the header's
 * signature, every record's hash, the chain from the header's prev_hash through the last record,
 * the signed checkpoints (with the keys of a JWKS) and, from format version 2, the Merkle root each
 * signs, rebuilt from the records; that a checkpoint covers the last record; that a chain which
 * starts after record 1 says why (a chron.pruned record); that the export is complete; and the
 * problems the server wrote beside records. With a witness log: every head in the export's range
 * must name the exported record and root, and an export without an upper bound must hold every
 * record the witness had a signed head for before the export was made.
 */
export async function verifyExport(items: AsyncIterable<ExportItem>, keys: ChronKeyLookup, options: VerifyOptions = {}): Promise<ExportReport> {
  let header: ExportHeader | null = null;
  let headerLine = 1;
  let records = 0;
  let prevHash: string | null = null;
  let lastHash: string | null = null;
  let expected = 0;
  let signed = new Map<number, { hash: string; root: string | undefined }>();
  let trailer: Record<string, unknown> | null = null;
  let lastSeq = 0;
  let frontier: MerkleFrontier | null = null;
  let prunedTo: number | null = null;
  const problems: ExportProblem[] = [];
  let problemCount = 0;
  // A record that fails is noted, and the check goes on from what the record says of itself.
  const note = (bad: Bad) => {
    problemCount += 1;
    if (problems.length < MAX_PROBLEMS) problems.push({ line: bad.line, seq: bad.seq, message: bad.message });
  };
  const witness = options.witness
    ? Object.assign(new WitnessHeads(options.witness[Symbol.asyncIterator](), ({ line, head, problem }) => note(new Bad(`witness log line ${line}: ${problem ?? "not a witnessed tree head"}`, null, head?.tree_size ?? null))), { checked: 0 })
    : null;
  /** The witness's heads up to this record: each must name it (and the root up to it, when known). */
  const holdAgainstWitness = async (seq: number, hash: string | null, line: number) => {
    if (!witness) return;
    for await (const head of witness.upTo(seq)) {
      if (head.tree_size !== seq || header!.first_seq === null || head.tree_size < header!.first_seq) continue;
      witness.checked += 1;
      if (head.hash !== hash) note(new Bad("the record disagrees with the tree head the witness holds for it", line, seq));
      else if (frontier && frontier.size === seq && frontier.root() !== head.root) note(new Bad("the records disagree with the Merkle root the witness holds at this record", line, seq));
    }
  };
  const report = (fatal?: Bad): ExportReport => {
    if (fatal) note(fatal);
    // First record first; problems of the file as a whole (no record) after them.
    problems.sort((a, b) => (a.seq ?? Number.MAX_SAFE_INTEGER) - (b.seq ?? Number.MAX_SAFE_INTEGER));
    return {
      ok: problemCount === 0,
      records,
      first_seq: header?.first_seq ?? null,
      last_seq: header?.last_seq ?? null,
      checkpoints: signed.size,
      ...(witness ? { witness: { heads: witness.heads, checked: witness.checked, last_tree_size: witness.last?.tree_size ?? null } } : {}),
      ...(problems.length ? { problem: problems[0] } : {}),
      problems,
      problem_count: problemCount,
    };
  };
  try {
    for await (const item of items) {
      if (trailer) throw new Bad("content after the trailer", item.line);
      if (item.type === "header") {
        if (header) throw new Bad("a second header", item.line);
        header = item.value;
        headerLine = item.line;
        checkHeader(header, keys, item.line);
        if (header.chron_halted) {
          note(new Bad(`Chron was halted when this export was made: record ${header.chron_halted.seq} ${header.chron_halted.problem}`, item.line, header.chron_halted.seq));
        }
        prevHash = header.prev_hash;
        expected = header.first_seq ?? 0;
        signed = new Map();
        // A checkpoint that does not hold is noted and left out; the records are still checked.
        for (const cp of header.checkpoints ?? []) {
          let claims;
          try {
            claims = verifyCheckpoint(cp.jws, keys);
          } catch (err) {
            note(new Bad(`checkpoint ${cp.seq}: ${(err as Error).message}`, item.line, cp.seq));
            continue;
          }
          if (claims.sequence !== cp.seq || claims.hash !== cp.hash) note(new Bad(`checkpoint ${cp.seq}: the header disagrees with what it signs`, item.line, cp.seq));
          else if (header.first_seq === null || cp.seq < header.first_seq || cp.seq > header.last_seq!) note(new Bad(`checkpoint ${cp.seq} lies outside the exported range`, item.line, cp.seq));
          else signed.set(cp.seq, { hash: cp.hash, root: claims.root });
        }
        if (header.selection === "contiguous" && header.prefix) {
          try {
            frontier = MerkleFrontier.parse(JSON.stringify(header.prefix));
          } catch {
            throw new Bad("the header's prefix is not a Merkle frontier", item.line);
          }
          if (frontier.size !== (header.first_seq ?? 1) - 1) throw new Bad("the header's prefix does not end where the export starts", item.line);
        }
        if (header.selection === "merkle" && header.tree_head) await holdTreeHead(header, witness, note, item.line);
        continue;
      }
      if (!header) throw new Bad("the export does not start with its report header", item.line);
      if (item.type === "error") throw new Bad(`the export ended with an error: ${String(item.value.message)} (incomplete)`, item.line);
      if (item.type === "problem") {
        const seq = typeof item.value.seq === "number" ? item.value.seq : null;
        note(new Bad(`CLAIIM found: ${String(item.value.problem)}`, item.line, seq));
        continue;
      }
      if (item.type === "trailer") {
        trailer = item.value;
        continue;
      }
      records += 1;
      if (header.selection === "merkle") {
        const { seq, prev_hash, hash, merkle_proof, ...content } = item.value as { seq: unknown; prev_hash: unknown; hash: unknown; merkle_proof?: { leaf_index?: unknown; audit_path?: unknown } };
        if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq <= lastSeq || seq > header.tree_head!.tree_size) {
          note(new Bad(`record ${String(seq)} is out of order or outside the signed tree`, item.line, typeof seq === "number" ? seq : null));
          continue;
        }
        lastSeq = seq;
        lastHash = typeof hash === "string" ? hash : null;
        if (typeof hash !== "string" || typeof prev_hash !== "string" || !hashes(content, seq, prev_hash, hash)) {
          note(new Bad("hash mismatch: the record is not what was recorded", item.line, seq));
          continue;
        }
        const path = merkle_proof?.leaf_index;
        if (path !== seq - 1 || !Array.isArray(merkle_proof?.audit_path) || !verifyInclusion(hash, seq - 1, header.tree_head!.tree_size, merkle_proof!.audit_path as string[], header.tree_head!.root)) {
          note(new Bad("the Merkle inclusion proof does not lead to the signed root", item.line, seq));
        }
        await holdAgainstWitness(seq, hash, item.line);
        continue;
      }
      const { seq, prev_hash, hash, ...content } = item.value as { seq: unknown; prev_hash: unknown; hash: unknown };
      const at = typeof seq === "number" ? seq : null;
      if (seq !== expected) {
        // Named by the record that should be there: the first one missing, or the one displaced.
        note(new Bad(`expected record ${expected}, found ${String(seq)}`, item.line, typeof seq === "number" && seq > expected ? expected : at));
        frontier = null;
      } else if (prev_hash !== prevHash) note(new Bad("broken link: prev_hash is not the previous record's hash", item.line, at));
      if (typeof hash !== "string" || typeof prev_hash !== "string" || typeof seq !== "number" || !hashes(content, seq, prev_hash, hash)) {
        note(new Bad("hash mismatch: the record is not what was recorded", item.line, at));
      } else {
        const event = content as { kind?: unknown; type?: unknown; after?: { first_seq?: unknown } };
        if (event.kind === "event" && event.type === "chron.pruned") prunedTo = Number(event.after?.first_seq);
        frontier?.append(hash);
        const cp = signed.get(seq);
        if (cp !== undefined && cp.hash !== hash) note(new Bad("the record disagrees with its signed checkpoint", item.line, seq));
        else if (cp?.root !== undefined && frontier?.size === seq && frontier.root() !== cp.root) {
          note(new Bad("the records up to this one disagree with the Merkle root its checkpoint signs", item.line, seq));
        }
      }
      if (typeof seq === "number") await holdAgainstWitness(seq, typeof hash === "string" ? hash : null, item.line);
      // Go on from what this record says it is, so that later records are checked on their own.
      expected = (typeof seq === "number" && Number.isSafeInteger(seq) ? seq : expected) + 1;
      prevHash = typeof hash === "string" ? hash : null;
      lastHash = prevHash;
    }
    if (!header) throw new Bad("no report header: this is not a Chron export", null);
    const open = !("to" in (header.filters ?? {})) && !("to_seq" in (header.filters ?? {}));
    const from = !("from" in (header.filters ?? {})) && !("from_seq" in (header.filters ?? {}));
    if (header.selection === "contiguous" && from && header.first_seq !== null && header.first_seq > 1 && prunedTo !== header.first_seq) {
      note(new Bad(`missing: the export starts at record ${header.first_seq}, and no chron.pruned record in it says records 1..${header.first_seq - 1} were archived`, headerLine, 1));
    }
    if (witness) {
      const end = header.selection === "merkle" ? (header.tree_head?.tree_size ?? 0) : (header.last_seq ?? 0);
      for await (const head of witness.upTo(Number.MAX_SAFE_INTEGER)) {
        if (open && head.tree_size > end && head.timestamp < header.exported_at) {
          note(new Bad(`missing: the witness holds a tree head of ${head.tree_size} records signed at ${head.timestamp}, before this export was made; it ends at ${end}`, null, end + 1));
          break;
        }
      }
      await witness.rest();
    }
    if (!trailer) throw new Bad(`no trailer: the export is truncated after ${records} records`, null, records ? expected - 1 : null);
    if (trailer.complete !== true || trailer.count !== records || records !== header.count) {
      throw new Bad(`the export holds ${records} records, but its header says ${header.count} and its trailer ${String(trailer.count)}`, null);
    }
    if (header.selection === "merkle" && records > 0 && lastSeq !== header.last_seq) throw new Bad(`the last record is ${lastSeq}, the header says ${header.last_seq}`, null, lastSeq);
    if (trailer.last_hash !== lastHash) throw new Bad("the trailer's last_hash is not the last record's hash", null, header.last_seq);
    if (header.selection === "contiguous" && records > 0 && !signed.has(header.last_seq!)) throw new Bad(`no signed checkpoint covers the last record (${header.last_seq})`, null, header.last_seq);
    return report();
  } catch (err) {
    if (err instanceof Bad) return report(err);
    throw err;
  }
}

/** The header's own signature and shape; throws Bad. */
function checkHeader(header: ExportHeader, keys: ChronKeyLookup, line: number): void {
  if (typeof header.signature !== "string") throw new Bad("the report header is not signed", line);
  let signedDigest: string;
  try {
    signedDigest = verifyDigestSignature(header.signature, keys, header.last_seq ?? header.tree_head?.tree_size ?? null);
  } catch (err) {
    throw new Bad((err as Error).message, line);
  }
  if (signedDigest !== headerDigest(header)) throw new Bad("the report header was changed after it was signed", line);
  if (header.format_version !== 1 && header.format_version !== 2) throw new Bad(`format version ${String(header.format_version)} is not one this verifier reads`, line);
  if (header.selection !== "contiguous" && header.selection !== "merkle") throw new Bad(`selection ${String(header.selection)} is not one this verifier checks`, line);
  if (header.selection === "merkle") {
    const th = header.tree_head;
    if (!th) {
      if (header.count !== 0) throw new Bad("a Merkle export without a signed tree head", line);
      return;
    }
    let claims;
    try {
      claims = verifyCheckpoint(th.checkpoint.jws, keys);
    } catch (err) {
      throw new Bad(`tree head: ${(err as Error).message}`, line, th.tree_size);
    }
    if (claims.sequence !== th.tree_size || claims.root !== th.root || claims.hash !== th.checkpoint.hash) {
      throw new Bad("the tree head disagrees with the checkpoint that signs it", line, th.tree_size);
    }
  }
}

/** A Merkle export's tree head against the witness's head of the same size, if it holds one. */
async function holdTreeHead(header: ExportHeader, witness: (WitnessHeads & { checked: number }) | null, note: (bad: Bad) => void, line: number): Promise<void> {
  if (!witness) return;
  const th = header.tree_head!;
  for await (const head of witness.upTo(th.tree_size)) {
    if (head.tree_size !== th.tree_size) continue;
    witness.checked += 1;
    if (head.root !== th.root) note(new Bad("the export's signed tree head disagrees with the witness's head of the same size", line, th.tree_size));
  }
}
