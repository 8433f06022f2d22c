// Chron's part of the object graph: the follower of other processes' commits, the one writer, the
// start-up verification, checkpoints, exports, retention and the coordinator's lease.
import type { Config } from "../config";
import type { Logger } from "../lib/logger";
import { LiveWork } from "../lib/pacer";
import { holderName, Lease, type LeaseStore } from "../db/lease";
import type { KeyStore } from "../keys/signing-keys";
import type { ChronStore, Recorder } from "../chron/chron-store";
import type { Peers } from "../shared/peers";
import type { EventContent } from "../chron/record";
import { ChronWriter } from "../chron/chron-writer";
import { ChronFollower, type ChangeNotices } from "../chron/follower";
import { buildChron, type OpenedChronKey } from "../chron/startup";
import type { ChronStart } from "../chron/checkpoints";
import { ChronExporter } from "../chron/export";
import { ChronRetention } from "../chron/retention";
import { ChronCoordinator } from "../chron/coordinator";
import { ReceivedHeads } from "../chron/witness-receiver";
import type { ReceivedHeadStore } from "../chron/received-store";

export function chronPart(config: Config, stores: { chron: ChronStore; identity: KeyStore; received: ReceivedHeadStore; changeNotices?: ChangeNotices; leases?: LeaseStore }, chronKey: OpenedChronKey, logger: Logger, userAgent: string, vouched?: ChronStart, peers?: Peers) {
  const chronSigner = chronKey.signer;
  // Another process's changes reach this one through the Chron events it commits (follow);
  // this process's own are known to the follower as they are appended, and skipped.
  let follow: (event: EventContent) => Promise<void> = async () => undefined;
  const follower = new ChronFollower(stores.chron, (event) => follow(event), config.sync, logger, stores.changeNotices ?? null);
  // Every change of state is committed by the single Chron writer, with its record, tagged by the Chron key.
  const writer = new ChronWriter(follower.track(stores.chron), config.chron.maxBatch, logger, chronSigner);
  // Decisions count themselves here; verification, reports and replays give way to them.
  const live = new LiveWork();
  // In worker mode a change (a commit with events: a suspension, a revocation, a new client...) is
  // answered once every other worker of the machine has applied it: what CLAIIM acknowledged is in
  // force on whichever worker the next request reaches. Decisions carry no event and wait for nothing.
  const record: Recorder = peers
    ? async (contents, effect) => {
        const rows = await writer.commit(contents, effect);
        if (contents.some((c) => c.kind === "event")) await peers.applied(rows[rows.length - 1].seq);
        return rows;
      }
    : (contents, effect) => writer.commit(contents, effect);

  // WARNING: start() verifies Chron whole, against its signed heads and the witness, before anything
  // is written: a tampered chain stops the start there, naming its first bad record.
  const parts = buildChron({
    key: chronKey,
    trust: config.chronTrust,
    policy: { everyRecords: config.chron.checkpointEveryRecords, everySeconds: config.chron.checkpointEverySeconds },
    store: stores.chron,
    identity: stores.identity,
    writer,
    live,
    logger,
    userAgent,
    vouched,
  });
  const { checkpointer, verifier } = parts;
  const exporter = new ChronExporter(stores.chron, verifier, checkpointer, record, config.chron.jsonExportMax, logger, live, {
    writerHead: () => writer.knownHead(),
    lastWitnessed: () => checkpointer.lastWitnessed(),
    signer: chronSigner,
  });
  const retention = new ChronRetention(stores.chron, exporter, checkpointer.keys(), record, config.archiveDir, logger, (head) => checkpointer.at(head), (work) =>
    stores.leases ? new Lease(stores.leases, "retention", holderName(), 30_000, logger, () => undefined).exclusively(work, 0) : work(),
  );
  const coordinator = new ChronCoordinator(stores.leases, checkpointer, config.chron.coordinatorLeaseMs, logger);
  // This CLAIIM as the witness of others: the heads they post, held in the database.
  const received = new ReceivedHeads(stores.received, logger);
  return {
    ...parts,
    chronSigner,
    follower,
    writer,
    live,
    record,
    exporter,
    retention,
    coordinator,
    received,
    /** What this process does with an event another process committed (set once every pillar is built). */
    onFollow(apply: (event: EventContent) => Promise<void>) {
      follow = apply;
    },
  };
}
