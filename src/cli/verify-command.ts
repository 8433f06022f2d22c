import { Command, Option } from "commander";
import { describeReport, verifyFile, VerifyUsageError } from "../chron/verify-cli";
import { CliError, EXIT, progressBar } from "./api";

/** The offline verifier (claiim-verify), with a progress bar: the same check, the same report. */
export function verifyCommand(): Command {
  return new Command("verify")
    .description("Check a Chron export offline, trusting neither the server nor its database: every hash, link, signed checkpoint or inclusion proof, and that it is complete")
    .argument("<file>", "the export (NDJSON, CSV or JSON)")
    .requiredOption("--jwks <file>", "the keys that verify Chron's checkpoints (GET /.well-known/jwks.json)")
    .option("--witness <file>", "a witness log to hold the export against (CLAIIM_WITNESS_DIR's chron-witness.log, or a remote witness's)")
    .addOption(new Option("--format <format>", "the export's format (default: by extension)").choices(["ndjson", "csv", "json"]))
    .action(async (file: string, opts: { jwks: string; format?: string; witness?: string }) => {
      const bar = progressBar("verifying");
      let report;
      try {
        report = await verifyFile(file, opts.jwks, { format: opts.format, witness: opts.witness, progress: { total: (n) => bar.start(n), record: () => bar.increment() } });
      } catch (err) {
        throw new CliError((err as Error).message, err instanceof VerifyUsageError ? EXIT.usage : EXIT.refused);
      } finally {
        bar.stop();
      }
      process.stdout.write(describeReport(report));
      if (!report.ok) throw new CliError("", EXIT.refused);
    });
}
