import cluster from "node:cluster";
import path from "node:path";
import { loadConfig } from "./config";
import { createLogger } from "./lib/logger";
import { startClaiim } from "./server";
import { runPrimary } from "./cluster/primary";
import { runWorker } from "./cluster/worker";

/** Printed once, on the start that created the credential; the secret itself never reaches the logs. */
function announceBootstrap(credentialFile: string): void {
  const file = path.relative(process.cwd(), credentialFile) || credentialFile;
  process.stdout.write(
    `\nFirst start: the bootstrap administrator credential was written to ${file} (mode 0600).\n` +
      `Use it as a bearer token; the claiim command reads it from CLAIIM_TOKEN:  export CLAIIM_TOKEN=$(cat ${file})\n` +
      `then create your own keys and delete the file.\n\n`,
  );
}

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  // Worker mode (src/cluster/): a primary that serves nothing, and CLAIIM_WORKERS serving processes.
  if (cluster.isWorker) return runWorker(config, logger);
  if (config.workers > 1) return runPrimary(config, logger, announceBootstrap);
  const claiim = await startClaiim(config, logger);
  if (claiim.bootstrapCredentialFile) announceBootstrap(claiim.bootstrapCredentialFile);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      // A second signal: the operator will not wait for the bound.
      logger.error("CLAIIM stopped at once, on a second signal", { signal });
      process.exit(1);
    }
    stopping = true;
    logger.info("stopping: readiness now answers 503; requests in flight and Chron commits get CLAIIM_SHUTDOWN_TIMEOUT_SECONDS to finish", { signal });
    // close() logs the last line, "CLAIIM stopped" or why it stopped uncleanly.
    claiim.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

main().catch((err: Error) => {
  process.stderr.write(`CLAIIM failed to start: ${err.message}\n`);
  process.exit(1);
});
