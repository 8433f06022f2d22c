// Reading a Chron export, whatever its format (NDJSON, CSV, JSON), as a stream of items with the
// line each came from: the offline verifier's input.
import fs from "node:fs";
import readline from "node:readline";
import { parse } from "csv-parse/sync";
import type { ExportHeader } from "./export-format";

/** One piece of an export, whatever its format, with the line it came from. */
export type ExportItem =
  | { type: "header"; value: ExportHeader; line: number }
  | { type: "record"; value: Record<string, unknown>; line: number }
  | { type: "trailer"; value: Record<string, unknown>; line: number }
  | { type: "problem"; value: { seq?: unknown; problem?: unknown }; line: number }
  | { type: "error"; value: Record<string, unknown>; line: number };

export class Bad extends Error {
  constructor(
    message: string,
    readonly line: number | null,
    readonly seq: number | null = null,
  ) {
    super(message);
  }
}

export function classify(value: unknown, line: number): ExportItem {
  if (!value || typeof value !== "object" || Array.isArray(value)) throw new Bad("not a JSON object", line);
  const kind = (value as { chron_export?: unknown }).chron_export;
  if (kind === "header") return { type: "header", value: value as ExportHeader, line };
  if (kind === "trailer") return { type: "trailer", value: value as Record<string, unknown>, line };
  if (kind === "error") return { type: "error", value: value as Record<string, unknown>, line };
  if (kind === "problem") return { type: "problem", value: value as { seq?: unknown; problem?: unknown }, line };
  if (kind !== undefined) throw new Bad(`unknown export line ${JSON.stringify(kind)}`, line);
  return { type: "record", value: value as Record<string, unknown>, line };
}

export function parseJson(text: string, line: number): unknown {
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

/** The JSON report envelope: {header, records, problems, trailer} (problems since format version 2). */
export async function* jsonItems(file: string): AsyncGenerator<ExportItem> {
  const doc = parseJson(await fs.promises.readFile(file, "utf8"), 1) as { header?: unknown; records?: unknown; problems?: unknown; trailer?: unknown };
  if (!doc || typeof doc !== "object") throw new Bad("not a JSON report", 1);
  yield classify(doc.header, 1);
  if (!Array.isArray(doc.records)) throw new Bad("the report has no records array", 1);
  for (const [i, r] of doc.records.entries()) yield classify(r, i + 1);
  if (doc.problems !== undefined && !Array.isArray(doc.problems)) throw new Bad("the report's problems are not a list", 1);
  for (const p of (doc.problems as unknown[] | undefined) ?? []) yield classify(p, 1);
  yield classify(doc.trailer, 1);
}
