// What the worker mode primary and its workers tell each other over the cluster's IPC channel,
// and what the primary hands a worker it forks (in its environment).
import type { ChronStart } from "../chron/checkpoints";
import { MerkleFrontier } from "../chron/merkle";

/** Primary to worker: stop as a signal would (the bounded stop, readiness first). */
export interface StopMessage {
  type: "claiim:stop";
  signal: string;
}

/** Worker to primary: the metrics of every worker, summed; primary to worker: the answer. */
export interface MetricsRequest {
  type: "claiim:metrics";
  id: number;
}
export interface MetricsAnswer {
  type: "claiim:metrics";
  id: number;
  text?: string;
  error?: string;
}

/**
 * A change in force everywhere before it is answered. Worker to primary: "I committed events up to
 * `seq`"; primary to each other worker: `claiim:follow`, answered `claiim:followed` once applied;
 * primary to the first worker: `claiim:changed` with the same id, once all have (or the bound passed).
 */
export interface ChangedMessage {
  type: "claiim:changed";
  id: number;
  seq?: number;
}
export interface FollowMessage {
  type: "claiim:follow";
  id: number;
  seq: number;
}
export interface FollowedMessage {
  type: "claiim:followed";
  id: number;
}

export const isMessage = <T extends { type: string }>(message: unknown, type: T["type"]): message is T =>
  typeof message === "object" && message !== null && (message as { type?: unknown }).type === type;

/** Which worker a process is (1..CLAIIM_WORKERS, kept by its replacement): on every log line it writes. */
export const SLOT_VARIABLE = "CLAIIM_WORKER_SLOT";
/** The head and Merkle frontier the primary verified Chron up to, for the first workers it forks. */
export const VOUCHED_VARIABLE = "CLAIIM_WORKER_CHRON_START";

export function encodeStart(start: ChronStart): string {
  return JSON.stringify({ head: start.head, frontier: start.frontier.serialize() });
}

export function decodeStart(text: string | undefined): ChronStart | undefined {
  if (!text) return undefined;
  const { head, frontier } = JSON.parse(text) as { head: ChronStart["head"]; frontier: string };
  return { head, frontier: MerkleFrontier.parse(frontier) };
}
