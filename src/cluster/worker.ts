// One serving process of worker mode: a whole CLAIIM (its directory and active policy in memory,
// its own Chron writer appending under the database's lock, its follower), on the port the
// primary shares among the workers. It stops when the primary says so or on its own signal, and
// exits when the primary is gone.
import path from "node:path";
import { AggregatorRegistry } from "prom-client";
import type { Config } from "../config";
import type { Logger } from "../lib/logger";
import { startClaiim, type Claiim } from "../server";
import type { Peers } from "../shared/peers";
import { decodeStart, isMessage, SLOT_VARIABLE, VOUCHED_VARIABLE, type ChangedMessage, type FollowedMessage, type FollowMessage, type MetricsAnswer, type StopMessage } from "./messages";

const METRICS_TIMEOUT_MS = 10_000;

export async function runWorker(config: Config, logger: Logger): Promise<void> {
  const slot = Number(process.env[SLOT_VARIABLE]);
  logger.defaultMeta = { ...(logger.defaultMeta as object), worker: slot, pid: process.pid };
  // Node's cluster ends a worker whose IPC channel closes unexpectedly (the primary was killed,
  // even with -9) at once: no worker lingers without its primary. It is said first.
  process.prependListener("disconnect", () => {
    if (!stopping) logger.error("the worker mode primary is gone (its IPC channel closed): this worker exits now");
  });

  let stopping = false;
  let signalled = false;
  let claiim: Claiim | null = null;
  // WARNING: one writer per witness log. The workers share the data folder, and the coordinator's
  // lease moves between them: each keeps its own witness log, as each replica does; a log written
  // by two processes would carry heads whose consistency proofs start from a head the other had
  // since passed. (Heads received as the witness of other CLAIIMs are in the database, shared.)
  const own: Config = { ...config, chronTrust: { ...config.chronTrust, witnessDir: path.join(config.chronTrust.witnessDir, `worker-${slot}`) } };
  // What this worker asks of the others, through the primary: to apply its changes before they are
  // answered. It never fails a request: without an answer within the bound (or without a primary),
  // the change is answered.
  const awaiting = new Map<number, () => void>();
  let nextAsk = 0;
  const peers: Peers = {
    applied: (seq) =>
      new Promise<void>((resolve) => {
        const id = nextAsk++;
        // The primary gives the others CLAIIM_SYNC_MAX_LAG_MS; this bound only guards against a primary gone.
        const timer = setTimeout(() => done(), 2 * config.sync.maxLagMs + 1000);
        const done = () => {
          clearTimeout(timer);
          awaiting.delete(id);
          resolve();
        };
        awaiting.set(id, done);
        if (!process.connected) return done();
        process.send!({ type: "claiim:changed", id, seq } satisfies ChangedMessage);
      }),
  };
  const started = startClaiim(own, logger, { vouched: decodeStart(process.env[VOUCHED_VARIABLE]), metricsListener: false, peers });
  const stop = (signal: string, fromSignal: boolean) => {
    if (fromSignal && signalled) {
      // A second signal to this very process: the operator will not wait for the bound.
      logger.error("CLAIIM worker stopped at once, on a second signal", { signal });
      process.exit(1);
    }
    signalled ||= fromSignal;
    // Ctrl-C reaches the primary and every worker: the primary's word then comes on top of the signal.
    if (stopping) return;
    stopping = true;
    logger.info("stopping: readiness now answers 503; requests in flight and Chron commits get CLAIIM_SHUTDOWN_TIMEOUT_SECONDS to finish", { signal });
    started
      .then((c) => c.close())
      .then(
        () => process.exit(0),
        () => process.exit(1),
      );
  };
  process.on("SIGINT", () => stop("SIGINT", true));
  process.on("SIGTERM", () => stop("SIGTERM", true));

  const pending = new Map<number, (answer: MetricsAnswer) => void>();
  let nextId = 0;
  process.on("message", (message: unknown) => {
    if (isMessage<StopMessage>(message, "claiim:stop")) stop(message.signal, false);
    else if (isMessage<MetricsAnswer>(message, "claiim:metrics")) pending.get(message.id)?.(message);
    else if (isMessage<ChangedMessage>(message, "claiim:changed")) awaiting.get(message.id)?.();
    else if (isMessage<FollowMessage>(message, "claiim:follow")) {
      // Another worker's change: applied now, then said so. A worker still starting loads it with the rest.
      const applied = claiim ? claiim.follower.catchUpNow() : Promise.resolve(false);
      void applied.catch(() => false).then(() => process.connected && process.send!({ type: "claiim:followed", id: message.id } satisfies FollowedMessage));
    }
  });
  // prom-client's cluster support answers the primary's requests with this worker's registry.
  new AggregatorRegistry();

  claiim = await started;
  AggregatorRegistry.setRegistries([claiim.metrics.registry]);
  // A scrape that lands on this worker answers with every worker's figures, which the primary sums.
  claiim.metrics.scrapeAcross(
    () =>
      new Promise<string>((resolve, reject) => {
        const id = nextId++;
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error("the worker mode primary did not answer with the metrics"));
        }, METRICS_TIMEOUT_MS);
        pending.set(id, (answer) => {
          clearTimeout(timer);
          pending.delete(id);
          if (answer.text !== undefined) resolve(answer.text);
          else reject(new Error(answer.error ?? "the metrics could not be collected"));
        });
        process.send!({ type: "claiim:metrics", id });
      }),
  );
}
