import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Command } from "commander";
import { loadConfig } from "../config";
import { openDatabase, sqlitePath } from "../db/database";
import { createLogger } from "../lib/logger";
import { Serial } from "../lib/serial";
import { ChronWriter } from "../chron/chron-writer";
import { LocalKeySigner, readTrustedKeys } from "../chron/signer";
import { IdentityDirectory } from "../identity/directory";
import { ApiKeyService } from "../identity/api-key-service";
import { PrismaIdentityStore } from "../identity/prisma-identity-store";
import { createChronStore } from "../server";
import { ALL_ORGANIZATIONS, type Actor } from "../shared/principal";
import { CliError, EXIT } from "./api";

/** Who recovered: the operator at this host, as the operating system names them. */
function operator(): Actor {
  let user = "unknown";
  try {
    user = os.userInfo().username;
  } catch {
    // No passwd entry (a container's arbitrary uid): the uid still says who.
    user = `uid ${process.getuid?.() ?? "?"}`;
  }
  return { type: "system", id: "claiim-admin-recover", name: `operator ${user}@${os.hostname()} (claiim admin recover)` };
}

function writeSecret(file: string, secret: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // wx: never over an existing file, which may be someone's key.
  fs.writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: "wx" });
}

/**
 * Mints an administrator key straight in the database, for an operator who lost every admin
 * credential: run on the host, with CLAIIM's own environment (DATABASE_URL, CLAIIM_DATA_DIR). The
 * key's creation is a Chron record, with the operator and their reason, like any other key's.
 */
async function recover(opts: { reason: string; out?: string; name: string; expiresInHours: string }): Promise<void> {
  if (!/^\d+$/.test(opts.expiresInHours)) throw new CliError("--expires-in-hours must be a whole number (0: never)", EXIT.usage);
  const hours = Number(opts.expiresInHours);
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    throw new CliError((err as Error).message, EXIT.usage);
  }
  const out = path.resolve(opts.out ?? path.join(config.dataDir, "recovered-admin.token"));
  if (fs.existsSync(out)) throw new CliError(`${out} exists: move it away, or give --out`, EXIT.usage);
  const logger = createLogger("error", process.stderr);
  // Opening a SQLite file that is not there would create an empty one: that is a wrong DATABASE_URL, not a database to mint in.
  if (config.databaseKind === "sqlite" && !fs.existsSync(sqlitePath(config.databaseUrl))) {
    throw new CliError(`there is no database at ${sqlitePath(config.databaseUrl)}: run this with CLAIIM's own DATABASE_URL`, EXIT.unreachable);
  }
  let db;
  try {
    db = await openDatabase(config.databaseKind, config.databaseUrl);
  } catch (err) {
    throw new CliError(`cannot open the database (${config.databaseKind}): ${(err as Error).message}`, EXIT.unreachable);
  }
  const store = new PrismaIdentityStore(db.prisma);
  const directory = new IdentityDirectory();
  let chron;
  try {
    // A database that CLAIIM never migrated has no Chron table (the SQLite store prepares its statements at once).
    chron = createChronStore(db);
    await chron.head();
    await directory.load(store);
  } catch (err) {
    await db.close();
    throw new CliError(`the database holds no CLAIIM data that can be read (${(err as Error).message.split("\n")[0]}); start CLAIIM once to create it`, EXIT.unreachable);
  }
  // WARNING: a record CLAIIM cannot vouch for halts it: the key's creation is tagged with Chron's
  // own key (the file outside the database), as CLAIIM's writer tags every record.
  const keyFile = config.chronTrust.keys.keyFile;
  if (!fs.existsSync(keyFile)) {
    await db.close();
    throw new CliError(`there is no Chron key at ${keyFile}: run this on CLAIIM's host with its CLAIIM_DATA_DIR (or CLAIIM_CHRON_SIGNING_KEY_FILE)`, EXIT.usage);
  }
  let signer;
  try {
    signer = new LocalKeySigner(fs.readFileSync(keyFile, "utf8"), readTrustedKeys(config.chronTrust.keys.trustedKeysFile));
  } catch (err) {
    await db.close();
    throw new CliError(`cannot read the Chron key ${keyFile}: ${(err as Error).message}`, EXIT.usage);
  }
  const writer = new ChronWriter(chron, 1, logger, signer);
  try {
    const keys = new ApiKeyService(directory, store, (contents, effect) => writer.commit(contents, effect), new Serial());
    const expiresAt = hours > 0 ? new Date(Date.now() + hours * 3600_000) : null;
    const { key, secret } = await keys.createApiKey({ name: opts.name, role: "admin", organization: null, expiresAt, reason: opts.reason }, operator(), ALL_ORGANIZATIONS);
    try {
      writeSecret(out, secret);
    } catch (err) {
      throw new CliError(`the key ${key.id} was created, but its secret could not be written to ${out}: ${(err as Error).message}; revoke it and try again`, EXIT.refused);
    }
    const seq = writer.knownHead()?.seq;
    process.stdout.write(
      `created administrator key ${key.id} ("${key.name}", ${expiresAt ? `expires ${expiresAt.toISOString()}` : "no expiry"}), recorded in Chron${seq ? ` as record ${seq}` : ""} with your reason.\n` +
        `Its secret is in ${out} (mode 0600). A CLAIIM already running reads API keys at start: restart it, then\n` +
        `  export CLAIIM_TOKEN=$(cat ${out})\n` +
        `create the keys you need, revoke this one, and delete the file.\n`,
    );
  } finally {
    await writer.close();
    await db.close();
  }
}

export function adminCommand(): Command {
  const admin = new Command("admin").description("Work on the database directly, on CLAIIM's host");
  admin
    .command("recover")
    .description("Mint a new administrator key when every admin credential is lost; recorded in Chron with the operator and the reason. Uses CLAIIM's environment (DATABASE_URL, CLAIIM_DATA_DIR)")
    .requiredOption("-r, --reason <text>", "why (recorded in Chron)")
    .option("-o, --out <file>", "where the secret is written, mode 0600 (default: <CLAIIM_DATA_DIR>/recovered-admin.token)")
    .option("--name <name>", "the key's name", "recovered administrator")
    .option("--expires-in-hours <n>", "the key's lifetime in hours (0: no expiry)", "24")
    .action(recover);
  return admin;
}
