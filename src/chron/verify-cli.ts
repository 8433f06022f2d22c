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
 * the command itself is used wrongly or a file cannot be read.
 */
import fs from "node:fs";
import { verifyExport, type ExportProblem } from "./export-verifier";
import { readWitnessLog } from "./witness";
import { jwksKeys } from "./checkpoint-jws";
import { csvItems, jsonItems, ndjsonItems } from "./export-items";

function usage(message: string): never {
  process.stderr.write(`claiim-verify: ${message}\nusage: claiim-verify <export file> --jwks <jwks.json> [--witness <witness.log>] [--format ndjson|csv|json]\n`);
  process.exit(2);
}

async function main(argv: string[]): Promise<number> {
  let file: string | undefined;
  let jwksFile: string | undefined;
  let format: string | undefined;
  let witnessFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--jwks") jwksFile = argv[++i];
    else if (argv[i] === "--witness") witnessFile = argv[++i];
    else if (argv[i] === "--format") format = argv[++i];
    else if (argv[i].startsWith("-")) usage(`unknown option ${argv[i]}`);
    else if (!file) file = argv[i];
    else usage("one export file at a time");
  }
  if (!file) usage("name the export file");
  if (!jwksFile) usage("--jwks is required: the keys that verify Chron's checkpoints (GET /.well-known/jwks.json)");
  format ??= file.endsWith(".csv") ? "csv" : file.endsWith(".json") ? "json" : "ndjson";
  if (!["ndjson", "csv", "json"].includes(format)) usage(`unknown format ${format}`);
  let keys;
  try {
    keys = jwksKeys(JSON.parse(fs.readFileSync(jwksFile, "utf8")));
  } catch (err) {
    usage(`cannot read the JWKS ${jwksFile}: ${(err as Error).message}`);
  }
  if (!fs.existsSync(file)) usage(`no such file ${file}`);
  if (witnessFile !== undefined && !fs.existsSync(witnessFile)) usage(`no such witness log ${witnessFile}`);
  const items = format === "csv" ? csvItems(file) : format === "json" ? jsonItems(file) : ndjsonItems(file);
  const report = await verifyExport(items, keys, witnessFile ? { witness: readWitnessLog(witnessFile, keys) } : {});
  const witnessed = report.witness ? `; witness: ${report.witness.heads} signed tree heads, each extending the one before, ${report.witness.checked} of them in the export's range and matching it` : "";
  if (report.ok) {
    process.stdout.write(`OK: ${report.records} records (${report.first_seq ?? "-"}..${report.last_seq ?? "-"}), ${report.checkpoints} signed checkpoints, chain intact${witnessed}\n`);
    return 0;
  }
  const where = (p: ExportProblem) => `${p.seq !== null ? ` at record ${p.seq}` : ""}${p.line !== null ? ` (line ${p.line})` : ""}`;
  const [first, ...rest] = report.problems;
  process.stdout.write(`FAILED${where(first)}: ${first.message}\n`);
  for (const p of rest) process.stdout.write(`  also${where(p)}: ${p.message}\n`);
  if (report.problem_count > report.problems.length) process.stdout.write(`  and ${report.problem_count - report.problems.length} more problems\n`);
  process.stdout.write(JSON.stringify(report) + "\n");
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`claiim-verify: ${err.message}\n`);
    process.exit(2);
  },
);
