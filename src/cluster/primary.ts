// Worker mode's primary (CLAIIM_WORKERS > 1): it serves no decision. It does the work of a start
// that must happen once, forks the workers that serve on the one port, restarts a worker that
// dies, sums the workers' metrics, and stops them all within the bound.
import cluster, { type Worker } from "node:cluster";
import type { Server } from "node:http";
import client, { AggregatorRegistry } from "prom-client";
import type { Config } from "../config";
import type { Logger } from "../lib/logger";
import { listen, metricsServer, startOnce, urlOf } from "../server";
import { encodeStart, isMessage, SLOT_VARIABLE, VOUCHED_VARIABLE, type ChangedMessage, type FollowedMessage, type FollowMessage, type MetricsAnswer, type MetricsRequest, type StopMessage } from "./messages";

/** A worker that lived this long before it died counts as healthy: its replacement starts at once. */
const HEALTHY_MS = 30_000;
const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 30_000;
/** Beyond the workers' own bound (CLAIIM_SHUTDOWN_TIMEOUT_SECONDS), how long the primary waits for their exit before it kills them. */
const EXIT_GRACE_MS = 3_000;

/** How long a dead worker's slot waits for its replacement after `failures` deaths in a row (this one counted), each within HEALTHY_MS of its start: at once, then 250 ms doubling up to 30 s. */
export function restartDelayMs(failures: number): number {
  return failures <= 1 ? 0 : Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** (failures - 2));
}

interface Slot {
  n: number;
  worker: Worker | null;
  startedAt: number;
  listening: boolean;
  /** Deaths in a row, each within HEALTHY_MS of its start. */
  failures: number;
  restart: NodeJS.Timeout | null;
}

/**
 * Runs the primary until it stops. `firstStart` is told the bootstrap credential's file when the
 * start-up work created it (a new database).
 *
 * WARNING: what must happen once happens here, before any worker exists: Chron verified whole,
 * the signing keys, the bootstrap credential and rego/'s policies on a new database (startOnce,
 * through the same start-up lease replicas take turns with). The workers then find it all done,
 * and the first ones go on from the head this verification reached (a worker started later, to
 * replace one, verifies the chain whole itself).
 */
export async function runPrimary(config: Config, logger: Logger, firstStart: (file: string) => void): Promise<void> {
  logger.defaultMeta = { ...(logger.defaultMeta as object), worker: "primary", pid: process.pid };
  const slots: Slot[] = Array.from({ length: config.workers }, (_, i) => ({ n: i + 1, worker: null, startedAt: 0, listening: false, failures: 0, restart: null }));
  let stopping: { signal: string; at: number } | null = null;
  let metrics: Server | null = null;
  const restarts = new client.Counter({ name: "claiim_worker_restarts_total", help: "Worker mode: workers that died and were started again by the primary", registers: [] });
  const live = new client.Gauge({ name: "claiim_workers_listening", help: "Worker mode: serving processes listening (CLAIIM_WORKERS wanted)", registers: [] });
  const own = new client.Registry();
  own.registerMetric(restarts);
  own.registerMetric(live);

  const finish = (clean: boolean, reason?: string) => {
    metrics?.close();
    metrics?.closeAllConnections();
    const ms = stopping ? Date.now() - stopping.at : 0;
    if (clean) logger.info("CLAIIM stopped", { ms, workers: config.workers });
    else logger.error("CLAIIM stopped uncleanly", { ms, reason });
    process.exit(clean ? 0 : 1);
  };
  const alive = () => slots.filter((s) => s.worker !== null);
  let unclean: string | null = null;
  let everListened = false;
  const stop = (signal: string) => {
    if (stopping) {
      logger.error("CLAIIM stopped at once, on a second signal", { signal });
      for (const s of alive()) s.worker!.process.kill("SIGKILL");
      process.exit(1);
    }
    stopping = { signal, at: Date.now() };
    for (const s of slots) if (s.restart) clearTimeout(s.restart);
    if (alive().length === 0) return finish(true);
    logger.info("stopping: every worker's readiness now answers 503; requests in flight and Chron commits get CLAIIM_SHUTDOWN_TIMEOUT_SECONDS to finish", { signal, workers: alive().length });
    for (const s of alive()) {
      const message: StopMessage = { type: "claiim:stop", signal };
      if (s.worker!.isConnected()) s.worker!.send(message);
      else s.worker!.process.kill("SIGTERM");
    }
    setTimeout(() => {
      const late = alive();
      unclean = `${late.length} worker(s) had not stopped within ${config.shutdownTimeoutSeconds} s; killed`;
      for (const s of late) s.worker!.process.kill("SIGKILL");
    }, config.shutdownTimeoutSeconds * 1000 + EXIT_GRACE_MS).unref();
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));

  logger.info("worker mode: start-up work once, before the workers start", { workers: config.workers });
  const once = await startOnce(config, logger);
  if (once.bootstrapCredentialFile) firstStart(once.bootstrapCredentialFile);
  if (stopping) return finish(true);

  // prom-client's cluster support: asks every worker for its registry and sums them.
  const aggregator = new AggregatorRegistry();
  const scrape = async () => ({ text: `${await aggregator.clusterMetrics()}\n${await own.metrics()}`, contentType: aggregator.contentType });
  // A worker's change, relayed to the others (each applies it, then says so). The worker that
  // committed it is answered once every other listening worker has, or after CLAIIM_SYNC_MAX_LAG_MS
  // without the late ones (one that far behind answers 503 state_stale by itself; a dead one is not
  // waited for, see the exit handler).
  const relays = new Map<number, { waiting: Set<number>; done: () => void }>();
  let nextRelay = 0;
  const relay = (from: Worker, follow: (id: number) => FollowMessage, answer: () => unknown) => {
    const others = alive().filter((s) => s.worker !== from && s.listening && s.worker!.isConnected());
    if (others.length === 0) return void answer();
    const id = nextRelay++;
    const timer = setTimeout(() => entry.done(), config.sync.maxLagMs);
    const entry = {
      waiting: new Set(others.map((s) => s.worker!.id)),
      done: () => {
        clearTimeout(timer);
        if (relays.delete(id)) answer();
      },
    };
    relays.set(id, entry);
    for (const s of others) s.worker!.send(follow(id));
  };
  const heard = (from: Worker, id: number) => {
    const entry = relays.get(id);
    if (!entry || !entry.waiting.delete(from.id)) return;
    if (entry.waiting.size === 0) entry.done();
  };
  cluster.on("message", (worker, message: unknown) => {
    if (isMessage<ChangedMessage>(message, "claiim:changed")) {
      return relay(worker, (id) => ({ type: "claiim:follow", id, seq: message.seq ?? 0 }), () => worker.isConnected() && worker.send({ type: "claiim:changed", id: message.id } satisfies ChangedMessage));
    }
    if (isMessage<FollowedMessage>(message, "claiim:followed")) return heard(worker, message.id);
    if (!isMessage<MetricsRequest>(message, "claiim:metrics")) return;
    scrape().then(
      ({ text }) => worker.isConnected() && worker.send({ type: "claiim:metrics", id: message.id, text } satisfies MetricsAnswer),
      (err: Error) => worker.isConnected() && worker.send({ type: "claiim:metrics", id: message.id, error: err.message } satisfies MetricsAnswer),
    );
  });

  const fork = (slot: Slot, vouched: string | null) => {
    slot.restart = null;
    slot.startedAt = Date.now();
    const worker = cluster.fork({ [SLOT_VARIABLE]: String(slot.n), [VOUCHED_VARIABLE]: vouched ?? "" });
    slot.worker = worker;
    slot.listening = false;
    worker.once("listening", () => {
      everListened = true;
      slot.listening = true;
      live.set(slots.filter((s) => s.listening).length);
    });
    worker.once("exit", (code, signal) => {
      // A change waiting for this worker waits no more (its replacement loads every change at start).
      for (const entry of relays.values()) if (entry.waiting.delete(worker.id) && entry.waiting.size === 0) entry.done();
      slot.worker = null;
      slot.listening = false;
      live.set(slots.filter((s) => s.listening).length);
      if (stopping) {
        if (code !== 0) unclean ??= `worker ${slot.n} exited with ${signal ?? `code ${code}`}`;
        if (alive().length === 0) finish(unclean === null, unclean ?? undefined);
        return;
      }
      const lived = Date.now() - slot.startedAt;
      slot.failures = lived >= HEALTHY_MS ? 1 : slot.failures + 1;
      if (!everListened && slots.every((s) => s.failures > 0)) {
        // Not one worker could start (the port is taken, say): restarting would only repeat that.
        stopping = { signal: "none", at: Date.now() };
        logger.error("no worker could start (see the errors above); CLAIIM stops", { workers: config.workers });
        for (const s of alive()) s.worker!.process.kill("SIGKILL");
        if (alive().length === 0) finish(false, "no worker could start");
        unclean = "no worker could start";
        return;
      }
      const delay = restartDelayMs(slot.failures);
      restarts.inc();
      logger.error("CLAIIM worker died; the primary starts another", { died: slot.n, died_pid: worker.process.pid, code, signal, lived_ms: lived, restart_in_ms: delay });
      slot.restart = setTimeout(() => fork(slot, null), delay);
    });
  };
  const vouched = once.chronStart ? encodeStart(once.chronStart) : null;
  let listening = 0;
  cluster.on("listening", (_worker, address) => {
    if (++listening !== config.workers) return;
    logger.info("CLAIIM listening", { url: `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${address.port}`, workers: config.workers, database: config.databaseKind, ...(metrics ? { metrics: `${urlOf(metrics, config.ops.metricsAddress!.host)}/metrics` } : {}) });
  });
  if (config.ops.metricsAddress) {
    // The metrics listener is the primary's: one address, every worker's figures summed.
    metrics = metricsServer(scrape);
    await listen(metrics, config.ops.metricsAddress.port, config.ops.metricsAddress.host);
  }
  for (const slot of slots) fork(slot, vouched);
}
