import fs from "node:fs";
import readline from "node:readline";
import type { KeyObject } from "node:crypto";
import { parse } from "csv-parse/sync";
import { verifyCheckpoint, verifyDigestSignature } from "./checkpoints";
import { headerDigest, type ExportHeader } from "./export";
import { verifyInclusion } from "./merkle";
import { recordHash, type ChronContent } from "./record";

/** True when `hash` is the record's hash; false too when the content cannot be canonicalised (nested too deep). */
function hashes(content: Record<string, unknown>, seq: number, prevHash: string, hash: string): boolean {
  try {
    return recordHash(content as unknown as ChronContent, seq, prevHash) === hash;
  } catch {
    return false;
  }
}

/** One piece of an export, whatever its format, with the line it came from. */
export type ExportItem =
  | { type: "header"; value: ExportHeader; line: number }
  | { type: "record"; value: Record<string, unknown>; line: number }
  | { type: "trailer"; value: Record<string, unknown>; line: number }
  | { type: "error"; value: Record<string, unknown>; line: number };

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
  /** The first problem, the same as problems[0]. */
  problem?: ExportProblem;
  /** Every problem found, first one first (at most MAX_PROBLEMS): a bad record does not stop the check. */
  problems: ExportProblem[];
  problem_count: number;
}

/** Problems listed in a report; the count goes on past it. */
const MAX_PROBLEMS = 100;

class Bad extends Error {
  constructor(
    message: string,
    readonly line: number | null,
    readonly seq: number | null = null,
  ) {
    super(message);
  }
}

function classify(value: unknown, line: number): ExportItem {
  if (!value || typeof value !== "object" || Array.isArray(value)) throw new Bad("not a JSON object", line);
  const kind = (value as { chron_export?: unknown }).chron_export;
  if (kind === "header") return { type: "header", value: value as ExportHeader, line };
  if (kind === "trailer") return { type: "trailer", value: value as Record<string, unknown>, line };
  if (kind === "error") return { type: "error", value: value as Record<string, unknown>, line };
  if (kind !== undefined) throw new Bad(`unknown export line ${JSON.stringify(kind)}`, line);
  return { type: "record", value: value as Record<string, unknown>, line };
}

function parseJson(text: string, line: number): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new Bad("not valid JSON (the file is corrupted)", line);
  }
}

/** NDJSON: one header line, one line per record, one trailer line. */
export async function* ndjsonItems(file: string): AsyncGenerator<ExportItem> {
  let line = 0;
  for await (const text of readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity })) {
    line += 1;
    if (text.trim() === "") continue;
    yield classify(parseJson(text, line), line);
  }
}

/** CSV: header and trailer as `# {json}` lines, then one row per record with its canonical content. */
export async function* csvItems(file: string): AsyncGenerator<ExportItem> {
  let line = 0;
  let columns: string[] | null = null;
  for await (const text of readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity })) {
    line += 1;
    if (text.trim() === "") continue;
    if (text.startsWith("# ")) {
      yield classify(parseJson(text.slice(2), line), line);
      continue;
    }
    let cells: string[];
    try {
      [cells] = parse(text) as string[][];
    } catch {
      throw new Bad("not a valid CSV row (the file is corrupted)", line);
    }
    if (!columns) {
      columns = cells;
      continue;
    }
    const at = (name: string) => cells[columns!.indexOf(name)];
    const content = parseJson(at("content"), line);
    if (!content || typeof content !== "object") throw new Bad("content is not a JSON object", line);
    const proof = columns.includes("merkle_proof") ? { merkle_proof: parseJson(at("merkle_proof"), line) } : {};
    yield { type: "record", value: { ...(content as object), seq: Number(at("seq")), prev_hash: at("prev_hash"), hash: at("hash"), ...proof }, line };
  }
}

/** The JSON report envelope: {header, records, trailer}. */
export async function* jsonItems(file: string): AsyncGenerator<ExportItem> {
  const doc = parseJson(await fs.promises.readFile(file, "utf8"), 1) as { header?: unknown; records?: unknown; trailer?: unknown };
  if (!doc || typeof doc !== "object") throw new Bad("not a JSON report", 1);
  yield classify(doc.header, 1);
  if (!Array.isArray(doc.records)) throw new Bad("the report has no records array", 1);
  for (const [i, r] of doc.records.entries()) yield classify(r, i + 1);
  yield classify(doc.trailer, 1);
}

/**
 * Checks an export on its own, trusting neither the server nor its database: every record's hash,
 * the chain from the header's prev_hash through the last record, the signed checkpoints (with the
 * keys of a JWKS), that a checkpoint covers the last record, and that the export is complete.
 */
export async function verifyExport(items: AsyncIterable<ExportItem>, keyFor: (kid: string) => KeyObject | undefined): Promise<ExportReport> {
  let header: ExportHeader | null = null;
  let records = 0;
  let prevHash: string | null = null;
  let lastHash: string | null = null;
  let expected = 0;
  let signed = new Map<number, string>();
  let trailer: Record<string, unknown> | null = null;
  let lastSeq = 0;
  const problems: ExportProblem[] = [];
  let problemCount = 0;
  // A record that fails is noted, and the check goes on from what the record says of itself.
  const note = (bad: Bad) => {
    problemCount += 1;
    if (problems.length < MAX_PROBLEMS) problems.push({ line: bad.line, seq: bad.seq, message: bad.message });
  };
  const report = (fatal?: Bad): ExportReport => {
    if (fatal) note(fatal);
    return {
      ok: problemCount === 0,
      records,
      first_seq: header?.first_seq ?? null,
      last_seq: header?.last_seq ?? null,
      checkpoints: signed.size,
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
        if (typeof header.signature !== "string") throw new Bad("the report header is not signed", item.line);
        let signedDigest: string;
        try {
          signedDigest = verifyDigestSignature(header.signature, keyFor);
        } catch (err) {
          throw new Bad((err as Error).message, item.line);
        }
        if (signedDigest !== headerDigest(header)) throw new Bad("the report header was changed after it was signed", item.line);
        if (header.selection !== "contiguous" && header.selection !== "merkle") throw new Bad(`selection ${String(header.selection)} is not one this verifier checks`, item.line);
        if (header.selection === "merkle") {
          const th = header.tree_head;
          if (!th) {
            if (header.count !== 0) throw new Bad("a Merkle export without a signed tree head", item.line);
          } else {
            let claims;
            try {
              claims = verifyCheckpoint(th.checkpoint.jws, keyFor);
            } catch (err) {
              throw new Bad(`tree head: ${(err as Error).message}`, item.line, th.tree_size);
            }
            if (claims.sequence !== th.tree_size || claims.root !== th.root || claims.hash !== th.checkpoint.hash) {
              throw new Bad("the tree head disagrees with the checkpoint that signs it", item.line, th.tree_size);
            }
          }
        }
        prevHash = header.prev_hash;
        expected = header.first_seq ?? 0;
        signed = new Map();
        for (const cp of header.checkpoints ?? []) {
          let claims;
          try {
            claims = verifyCheckpoint(cp.jws, keyFor);
          } catch (err) {
            throw new Bad(`checkpoint ${cp.seq}: ${(err as Error).message}`, item.line, cp.seq);
          }
          if (claims.sequence !== cp.seq || claims.hash !== cp.hash) throw new Bad(`checkpoint ${cp.seq}: the header disagrees with what it signs`, item.line, cp.seq);
          if (header.first_seq === null || cp.seq < header.first_seq || cp.seq > header.last_seq!) throw new Bad(`checkpoint ${cp.seq} lies outside the exported range`, item.line, cp.seq);
          signed.set(cp.seq, cp.hash);
        }
        continue;
      }
      if (!header) throw new Bad("the export does not start with its report header", item.line);
      if (item.type === "error") throw new Bad(`the export ended with an error: ${String(item.value.message)} (incomplete)`, item.line);
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
        const path = merkle_proof?.audit_path;
        if (merkle_proof?.leaf_index !== seq - 1 || !Array.isArray(path) || !verifyInclusion(hash, seq - 1, header.tree_head!.tree_size, path as string[], header.tree_head!.root)) {
          note(new Bad("the Merkle inclusion proof does not lead to the signed root", item.line, seq));
        }
        continue;
      }
      const { seq, prev_hash, hash, ...content } = item.value as { seq: unknown; prev_hash: unknown; hash: unknown };
      const at = typeof seq === "number" ? seq : null;
      if (seq !== expected) note(new Bad(`expected record ${expected}, found ${String(seq)}`, item.line, at));
      else if (prev_hash !== prevHash) note(new Bad("broken link: prev_hash is not the previous record's hash", item.line, at));
      if (typeof hash !== "string" || typeof prev_hash !== "string" || typeof seq !== "number" || !hashes(content, seq, prev_hash, hash)) {
        note(new Bad("hash mismatch: the record is not what was recorded", item.line, at));
      } else {
        const cp = signed.get(seq);
        if (cp !== undefined && cp !== hash) note(new Bad("the record disagrees with its signed checkpoint", item.line, seq));
      }
      // Go on from what this record says it is, so that later records are checked on their own.
      expected = (typeof seq === "number" && Number.isSafeInteger(seq) ? seq : expected) + 1;
      prevHash = typeof hash === "string" ? hash : null;
      lastHash = prevHash;
    }
    if (!header) throw new Bad("no report header: this is not a Chron export", null);
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
