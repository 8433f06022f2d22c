import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { once } from "node:events";
import { ConflictError, InputError, ServiceUnavailableError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import type { ChronStore, Recorder } from "./chron-store";
import type { ChronExporter } from "./export";
import { verifyExport } from "./export-verifier";
import { newEvent, type ChainHead } from "./record";
import type { Actor } from "../shared/principal";
import type { ChronKeyLookup } from "./signer";
import { ndjsonItems } from "./export-items";
import { LeaseBusyError } from "../db/lease";

export interface PruneResult {
  archive: { file: string; sha256: string; records: number; first_seq: number; last_seq: number };
  pruned: number;
  first_remaining_seq: number | null;
}

/**
 * Retention, the one way records leave Chron: a closed range, from the first kept record up to a
 * signed checkpoint, is exported to an archive file, the archive is verified as an auditor would
 * verify it, and only then is the range deleted, through the database's delete guard, in the same
 * transaction as the record that says so, which is signed and witnessed at once: verification
 * accepts a chain that starts after record 1 only where such a record accounts for the gap. The
 * checkpoint at the end of the range stays: it carries
 * the hash and the Merkle frontier the rest of the chain goes on from, so both the archive and
 * what remains verify on their own.
 */
export class ChronRetention {
  private running = false;

  constructor(
    private readonly store: ChronStore,
    private readonly exporter: ChronExporter,
    private readonly keys: ChronKeyLookup,
    private readonly record: Recorder,
    private readonly archiveDir: string,
    private readonly logger: Logger,
    /** Signs (and witnesses) a tree head at this record at once (Checkpointer.at). */
    private readonly signHead: (record: ChainHead) => Promise<unknown>,
    /** Runs a retention run while holding the database's `retention` lease, so that one runs at a time across CLAIIM processes; throws LeaseBusyError when another holds it. */
    private readonly exclusively: <T>(work: () => Promise<T>) => Promise<T> = (work) => work(),
  ) {}

  async prune(upToSeq: number, reason: string, actor: Actor): Promise<PruneResult> {
    if (this.running) throw new ConflictError("retention_running", "a retention run is already in progress");
    this.running = true;
    try {
      return await this.exclusively(() => this.run(upToSeq, reason, actor));
    } catch (err) {
      if (err instanceof LeaseBusyError) throw new ConflictError("retention_running", "a retention run is in progress in another CLAIIM process on this database");
      throw err;
    } finally {
      this.running = false;
    }
  }

  private async run(upToSeq: number, reason: string, actor: Actor): Promise<PruneResult> {
    const kept = await this.store.bounds({});
    if (!kept || upToSeq < kept.first) throw new ConflictError("already_pruned", `records up to ${upToSeq} are not in the database any more`);
    const checkpoint = (await this.store.checkpoints(upToSeq - 1, 1))[0];
    if (checkpoint?.seq !== upToSeq) {
      const before = (await this.store.checkpoints(kept.first - 1, 10_000)).filter((c) => c.seq < upToSeq).pop();
      throw new InputError("not_a_checkpoint", `retention must end at a signed checkpoint; the nearest below ${upToSeq} is ${before?.seq ?? "none"}${checkpoint ? `, above it ${checkpoint.seq}` : ""}`, [
        { path: "up_to_seq", message: "not a checkpoint" },
      ]);
    }
    if (!checkpoint.frontier) throw new ConflictError("checkpoint_without_frontier", `checkpoint ${upToSeq} predates Merkle frontiers; choose a later one`);

    fs.mkdirSync(this.archiveDir, { recursive: true });
    const file = path.join(this.archiveDir, `chron-${kept.first}-${upToSeq}.ndjson`);
    const { header, body } = await this.exporter.prepare({ fromSeq: kept.first, toSeq: upToSeq }, {}, "ndjson", actor, { from_seq: kept.first, to_seq: upToSeq });
    const hash = createHash("sha256");
    const out = fs.createWriteStream(`${file}.tmp`);
    for await (const chunk of body) {
      hash.update(chunk);
      if (!out.write(chunk)) await once(out, "drain");
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    fs.renameSync(`${file}.tmp`, file);
    const sha256 = hash.digest("hex");

    // WARNING: nothing is deleted unless the archive verifies on its own and holds the whole range.
    const report = await verifyExport(ndjsonItems(file), this.keys);
    if (!report.ok || report.records !== upToSeq - kept.first + 1 || header.last_seq !== upToSeq) {
      throw new ServiceUnavailableError("archive_unverified", `the archive ${path.basename(file)} does not verify (${report.problem?.message ?? "incomplete"}); nothing was deleted`);
    }
    let pruned = 0;
    const [prunedRecord] = await this.record(
      [
        newEvent({
          type: "chron.pruned",
          actor,
          subject: { type: "chron", id: `${kept.first}-${upToSeq}`, name: path.basename(file) },
          reason,
          before: { first_seq: kept.first },
          after: { first_seq: upToSeq + 1, anchor_checkpoint: upToSeq, archive: { file: path.basename(file), sha256, records: report.records } },
        }),
      ],
      async (tx) => {
        pruned = await this.store.prune(upToSeq, tx);
      },
    );
    // WARNING: the gap at the start is accepted only because a signed record says so: sign it now,
    // and hand it to the witness, rather than leave it in the unsigned tail.
    await this.signHead({ seq: prunedRecord.seq, hash: prunedRecord.hash });
    this.logger.info("chron pruned", { up_to_seq: upToSeq, records: pruned, archive: file });
    const rest = await this.store.bounds({});
    return {
      archive: { file, sha256, records: report.records, first_seq: kept.first, last_seq: upToSeq },
      pruned,
      first_remaining_seq: rest?.first ?? null,
    };
  }
}
