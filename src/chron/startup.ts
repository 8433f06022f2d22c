import { createPublicKey } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import jwt from "jsonwebtoken";
import type { KeyStore } from "../keys/signing-keys";
import type { Logger } from "../lib/logger";
import type { LiveWork } from "../lib/pacer";
import { Checkpointer, type CheckpointPolicy, type ChronStart } from "./checkpoints";
import type { ChronStore } from "./chron-store";
import { ChronService } from "./chron-service";
import { ChronVerifier } from "./verification";
import type { VerifyResult } from "./verify-types";
import type { ChronWriter } from "./chron-writer";
import type { ChronTrustConfig } from "./config";
import { MerkleFrontier } from "./merkle";
import { newEvent } from "./record";
import { SYSTEM } from "../shared/principal";
import { LocalKeySigner, lookupIn, movingKeyFile, openKeyFile, publicJwkOf, readTrustedKeys, settleKeyFile, trustKeys, type ChronSigner, type ChronVerifyingKey } from "./signer";
import { WitnessLog } from "./witness";
import { RemoteWitness } from "./remote-witness";

/** Start-up found the chain tampered with: CLAIIM does not start on it, and says where. */
export class ChronTamperedError extends Error {
  constructor(readonly result: VerifyResult) {
    const first = result.first_bad!;
    const unknownKey = result.problems.some((p) => /signed by an unknown key/.test(p.problem));
    super(
      `Chron does not verify, so CLAIIM will not start: record ${first.seq}: ${first.problem}` +
        (result.problem_count > 1 ? ` (and ${result.problem_count - 1} more problem${result.problem_count > 2 ? "s" : ""}, listed in the log)` : "") +
        (unknownKey
          ? ". Some signatures are by a key CLAIIM neither holds nor trusts: if the Chron key file was replaced, put the previous public key in the trusted keys file (CLAIIM_CHRON_TRUSTED_KEYS_FILE); if not, they were forged"
          : ""),
    );
  }
}

export interface ChronStarted {
  signer: ChronSigner;
  chron: ChronService;
  verifier: ChronVerifier;
  checkpointer: Checkpointer;
  remoteWitness: RemoteWitness | null;
}


/** The Chron key, opened (and, the first time, moved out of the database: see startChron). */
export interface OpenedChronKey {
  signer: LocalKeySigner;
  /** The keys an earlier CLAIIM kept in the database, when this start moves Chron's key out. */
  moved: { kids: string[]; upTo: number } | null;
  /** The kid that signed the last checkpoint before this start. */
  previousKid: string | undefined;
}

/**
 * Opens Chron's signing key file: created beside the database the first time. Moving the key out
 * of the database: the key an earlier CLAIIM kept there cannot be trusted any more than the
 * database (whoever reads the database may hold it), so it is not moved but retired. A new key is
 * made in the file; the old public keys go into the trusted keys file, each trusted only up to the
 * last checkpoint it signed (claiim_max_seq), so that old checkpoints and exports stay verifiable
 * and nothing it signs later is believed. startChron then signs the records after that checkpoint
 * (which the earlier CLAIIM did not tag) with the new key at once, and records the move in Chron
 * (`chron.signing_key_moved`).
 */
export async function openChronKey(trust: ChronTrustConfig, store: ChronStore, identity: Pick<KeyStore, "listSigningKeys">, logger: Logger): Promise<OpenedChronKey> {
  // Keys an earlier CLAIIM kept in the database; once moved out, they are marked retired there.
  const legacy = await identity.listSigningKeys("chron-checkpoint");
  const resuming = fs.existsSync(movingKeyFile(trust.keys));
  // WARNING: the move happens only where no key file exists yet, a fact outside the database: a
  // database administrator who marks an old key unretired cannot make CLAIIM trust it again.
  const moving = !trust.keys.keyFileGiven && !fs.existsSync(trust.keys.keyFile) && (resuming || legacy.some((k) => k.retiredAt === null));
  const lastBefore = await store.lastCheckpoint();
  const previousKid = lastBefore ? (jwt.decode(lastBefore.jws, { complete: true })?.header as { kid?: string } | undefined)?.kid : undefined;
  // The old keys vouch up to the last checkpoint one of them signed (none, on a resumed move that signed already).
  const cap = previousKid && legacy.some((k) => k.kid === previousKid) ? lastBefore!.seq : 0;
  if (moving && cap > 0) {
    // WARNING: the trusted keys go to their file before the new key signs anything: a crash in
    // between leaves old checkpoints verifiable at the next start, which goes on with the move.
    trustKeys(
      trust.keys.trustedKeysFile,
      legacy.map((k): ChronVerifyingKey => {
        const publicKey = createPublicKey({ key: k.publicJwk, format: "jwk" });
        return { kid: k.kid, alg: "ES256", publicKey, publicJwk: publicJwkOf(publicKey), maxSeq: cap };
      }),
    );
  }
  const { pem, created } = moving ? openKeyFile(trust.keys, movingKeyFile(trust.keys)) : openKeyFile(trust.keys);
  if (created) logger.info("Chron signing key created", { file: trust.keys.keyFile });
  return {
    signer: new LocalKeySigner(pem, readTrustedKeys(trust.keys.trustedKeysFile)),
    moved: moving ? { kids: legacy.map((k) => k.kid), upTo: cap } : null,
    previousKid,
  };
}

/**
 * Chron's parts, built on an opened key: nothing is read or written until start(). start() opens
 * the witness log and verifies the whole chain as GET /v1/chron/verify does, before anything is
 * written: a chain that does not verify stops the start, naming its first bad record. The writer
 * and the checkpointer go on from the head and Merkle frontier that pass found. A key moved out of
 * the database, or changed, is recorded, and a head signed at once.
 */
export function buildChron(deps: {
  key: OpenedChronKey;
  trust: ChronTrustConfig;
  policy: CheckpointPolicy;
  store: ChronStore;
  identity: KeyStore;
  writer: ChronWriter;
  live: LiveWork;
  logger: Logger;
  userAgent: string;
  /**
   * The head and Merkle frontier a whole-chain verification found moments before, in another
   * process of this deployment (worker mode: the primary, just before it forked this worker).
   * Given, start-up goes on from it instead of verifying the whole chain again; what was appended
   * after it is adopted as the writer adopts other processes' records (each tag checked) and
   * folded into the frontier as the checkpointer catches up (each link checked).
   */
  vouched?: ChronStart;
}): ChronStarted & { start(): Promise<void>; startedFrom(): ChronStart | null } {
  const { trust, store, writer, logger, key } = deps;
  const signer = key.signer;
  const log = new WitnessLog(trust.witnessDir);
  const remoteWitness: RemoteWitness | null = trust.remoteWitness
    ? new RemoteWitness(trust.remoteWitness, (from, to) => checkpointer.proofBetween(from, to), logger, deps.userAgent)
    : null;
  const chron = new ChronService(store);
  const verifier = new ChronVerifier(store, writer, { keys: lookupIn(signer.publicKeys()), signer, witnessFile: log.file, remoteWitness: () => remoteWitness?.state() ?? null }, deps.live);
  const checkpointer = new Checkpointer(store, signer, deps.policy, logger, { log, remote: remoteWitness });

  let startedFrom: ChronStart | null = null;

  async function start(): Promise<void> {
    if (deps.vouched && !key.moved) {
      const { head, frontier } = deps.vouched;
      // The record the verification ended at must still be there, unchanged; else verify afresh.
      const stored = head ? (await store.list({ toSeq: head.seq }, head.seq - 1, 1))[0] : null;
      if (!head || stored?.hash === head.hash) {
        logger.info("Chron verified at start-up by the primary; going on from its head", { seq: head?.seq ?? 0 });
        writer.startAt(head);
        await checkpointer.start({ head, frontier });
        writer.onCommit((rows) => checkpointer.committed(rows));
        startedFrom = { head, frontier };
        await recordKeyChange(head);
        return;
      }
      logger.warn("the record the primary verified Chron up to has changed since; verifying the whole chain", { seq: head.seq });
    }
    const started = Date.now();
    const { result, head, frontier } = await verifier.verifyAll({ acceptUntaggedLegacy: key.moved !== null });
    logger.info("Chron verified at start-up", { records: result.checked, checkpoints: result.checkpoints.checked, witnessed: result.witness?.heads_checked ?? 0, ms: Date.now() - started });
    if (!result.valid) {
      for (const p of result.problems) logger.error("Chron problem", { ...p });
      throw new ChronTamperedError(result);
    }
    writer.startAt(head);
    await checkpointer.start({ head, frontier: frontier ?? new MerkleFrontier() });
    writer.onCommit((rows) => checkpointer.committed(rows));
    startedFrom = frontier ? { head, frontier } : null;
    await recordKeyChange(head);
  }

  async function recordKeyChange(head: { seq: number } | null): Promise<void> {
    if (key.moved) {
      const moved = key.moved;
      const now = new Date();
      const legacy = await deps.identity.listSigningKeys("chron-checkpoint");
      // A move interrupted after its record committed is finished, not recorded twice.
      const [done] = await store.latest({ kind: "event", action: "chron.signing_key_moved" }, 1);
      const recorded = done && (JSON.parse(done.content) as { after?: { kid?: string } }).after?.kid === signer.kid ? done : null;
      const [row] = recorded ? [recorded] : await writer.commit(
        [
          newEvent({
            type: "chron.signing_key_moved",
            actor: SYSTEM,
            subject: { type: "signing_key", id: signer.kid, name: "chron-checkpoint" },
            reason: "the Chron signing key is kept outside the database; the keys kept in it are retired",
            before: { location: "database", kids: moved.kids },
            after: {
              location: "file",
              file: path.basename(trust.keys.keyFile),
              kid: signer.kid,
              retired_keys_verify_up_to: moved.upTo,
              untagged_records: head && head.seq > moved.upTo ? { from_seq: moved.upTo + 1, to_seq: head.seq } : null,
            },
          }),
        ],
        async (tx) => {
          for (const k of legacy) if (k.retiredAt === null) await deps.identity.saveSigningKey({ ...k, retiredAt: now }, tx);
        },
      );
      await checkpointer.at({ seq: row.seq, hash: row.hash });
      settleKeyFile(trust.keys);
      logger.warn("Chron signing key moved out of the database", { file: trust.keys.keyFile, retired: moved.kids, verify_up_to: moved.upTo });
    } else if (key.previousKid && key.previousKid !== signer.kid) {
      const [row] = await writer.commit([
        newEvent({
          type: "chron.signing_key_changed",
          actor: SYSTEM,
          subject: { type: "signing_key", id: signer.kid, name: "chron-checkpoint" },
          reason: "the Chron signing key file holds another key than the one that signed the last checkpoint",
          before: { kid: key.previousKid },
          after: { kid: signer.kid, file: path.basename(trust.keys.keyFile), trusted_kids: signer.publicKeys().map((k) => k.kid) },
        }),
      ]);
      await checkpointer.at({ seq: row.seq, hash: row.hash });
    }
  }

  return { signer, chron, verifier, checkpointer, remoteWitness, start, startedFrom: () => startedFrom };
}
