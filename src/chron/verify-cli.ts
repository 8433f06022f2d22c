/*
 * claiim-verify: checks a Chron export offline, without the server or its database.
 *
 *   claiim-verify <export.ndjson|.csv|.json> --jwks <jwks.json> [--witness <witness.log>] [--format ndjson|csv|json]
 *
 * With --witness, the export is also held against a witness log (CLAIIM_WITNESS_DIR's
 * chron-witness.log, or what a remote witness stored): every head in it is checked (signature,
 * and the consistency proof that it extends the one before), every head in the export's range must
 * name the exported record and Merkle root, and an export without an upper bound must hold every
 * record the witness had a signed head for before the export was made.
 *
 * Exit status: 0 when every check passes, 1 naming the first bad record when one fails, 2 when
 * the command itself is used wrongly or a file cannot be read. `claiim verify` runs the same check
 * (verifyFile below) with a progress bar.
 */
import fs from "node:fs";
import { verifyExport, type ExportProblem, type ExportReport } from "./export-verifier";
import { readWitnessLog } from "./witness";
import { jwksKeys } from "./checkpoint-jws";
import { csvItems, jsonItems, ndjsonItems, type ExportItem } from "./export-items";

/** The command was used wrongly, or a file cannot be read: exit status 2. */
export class VerifyUsageError extends Error {}

export type VerifyFormat = "ndjson" | "csv" | "json";

/** What a progress display is told: the records the header announces, then each record checked. */
export interface VerifyProgress {
  total(count: number): void;
  record(): void;
}

/** Checks one export file against a JWKS file (and a witness log); throws VerifyUsageError when it cannot even start. */
export async function verifyFile(file: string, jwksFile: string, options: { format?: string; witness?: string; progress?: VerifyProgress } = {}): Promise<ExportReport> {
  const chosen = options.format ?? (file.endsWith(".csv") ? "csv" : file.endsWith(".json") ? "json" : "ndjson");
  if (!["ndjson", "csv", "json"].includes(chosen)) throw new VerifyUsageError(`unknown format ${chosen}`);
  let keys;
  try {
    keys = jwksKeys(JSON.parse(fs.readFileSync(jwksFile, "utf8")));
  } catch (err) {
    throw new VerifyUsageError(`cannot read the JWKS ${jwksFile}: ${(err as Error).message}`);
  }
  if (!fs.existsSync(file)) throw new VerifyUsageError(`no such file ${file}`);
  if (options.witness !== undefined && !fs.existsSync(options.witness)) throw new VerifyUsageError(`no such witness log ${options.witness}`);
  const items = chosen === "csv" ? csvItems(file) : chosen === "json" ? jsonItems(file) : ndjsonItems(file);
  return verifyExport(options.progress ? counted(items, options.progress) : items, keys, options.witness ? { witness: readWitnessLog(options.witness, keys) } : {});
}

async function* counted(items: AsyncIterable<ExportItem>, progress: VerifyProgress): AsyncGenerator<ExportItem> {
  for await (const item of items) {
    if (item.type === "header" && typeof item.value?.count === "number") progress.total(item.value.count);
    else if (item.type === "record") progress.record();
    yield item;
  }
}

/** The report as the verifier prints it: OK, or every problem (first one first) and the report as JSON. */
export function describeReport(report: ExportReport): string {
  const witnessed = report.witness ? `; witness: ${report.witness.heads} signed tree heads, each extending the one before, ${report.witness.checked} of them in the export's range and matching it` : "";
  if (report.ok) return `OK: ${report.records} records (${report.first_seq ?? "-"}..${report.last_seq ?? "-"}), ${report.checkpoints} signed checkpoints, chain intact${witnessed}\n`;
  const where = (p: ExportProblem) => `${p.seq !== null ? ` at record ${p.seq}` : ""}${p.line !== null ? ` (line ${p.line})` : ""}`;
  const [first, ...rest] = report.problems;
  let out = `FAILED${where(first)}: ${first.message}\n`;
  for (const p of rest) out += `  also${where(p)}: ${p.message}\n`;
  if (report.problem_count > report.problems.length) out += `  and ${report.problem_count - report.problems.length} more problems\n`;
  return out + JSON.stringify(report) + "\n";
}

const USAGE = "usage: claiim-verify <export file> --jwks <jwks.json> [--witness <witness.log>] [--format ndjson|csv|json]";

async function main(argv: string[]): Promise<number> {
  let file: string | undefined;
  let jwksFile: string | undefined;
  let format: string | undefined;
  let witness: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--jwks") jwksFile = argv[++i];
    else if (argv[i] === "--witness") witness = argv[++i];
    else if (argv[i] === "--format") format = argv[++i];
    else if (argv[i].startsWith("-")) throw new VerifyUsageError(`unknown option ${argv[i]}`);
    else if (!file) file = argv[i];
    else throw new VerifyUsageError("one export file at a time");
  }
  if (!file) throw new VerifyUsageError("name the export file");
  if (!jwksFile) throw new VerifyUsageError("--jwks is required: the keys that verify Chron's checkpoints (GET /.well-known/jwks.json)");
  const report = await verifyFile(file, jwksFile, { format, witness });
  process.stdout.write(describeReport(report));
  return report.ok ? 0 : 1;
}

/** bin/claiim-verify: runs, prints, and exits with the status above. */
export function run(argv: string[]): void {
  main(argv).then(
    (code) => process.exit(code),
    (err: Error) => {
      process.stderr.write(`claiim-verify: ${err.message}\n${err instanceof VerifyUsageError ? `${USAGE}\n` : ""}`);
      process.exit(2);
    },
  );
}

if (require.main === module) run(process.argv.slice(2));
