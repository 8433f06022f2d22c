import { whenFree, type Prisma } from "../db/database";
import type { DecisionRef } from "../chron/record";

export interface ReplayChange extends DecisionRef {
  recorded: { decision: string; reasons: string[]; policy_version: number | null };
  replayed: { decision: string; reasons: string[] };
  /** Redaction erased or masked part of the recorded input, so the replay saw less than the original decision did. */
  redacted: boolean;
}

export interface ReplayView {
  id: string;
  version: number;
  revision: string;
  from: string;
  to: string;
  organization_id: string | null;
  requested_by: string;
  state: "running" | "done" | "failed";
  started_at: string;
  finished_at: string | null;
  error: string | null;
  progress: { processed: number; total: number };
  unchanged: number;
  /** Records without a recorded input (none can be replayed). */
  skipped: number;
  /** Replayed records whose input was redacted. */
  redacted: number;
  /** Evaluations stopped at the deadline or the memory limit (each counted as a deny). */
  bounds_exceeded: number;
  allow_to_deny: { count: number; records: ReplayChange[] };
  deny_to_allow: { count: number; records: ReplayChange[] };
  /** Neither version allows, but one denies where the other asks for a human's approval. */
  approval_changes: { count: number; records: ReplayChange[] };
  /** True when more changes were found than `max_records` keeps per direction; the counts are complete. */
  truncated: boolean;
}

/** The three lists of changed records of a replay. */
export type ReplayDirection = "allow_to_deny" | "deny_to_allow" | "approval_changes";
export const REPLAY_DIRECTIONS: readonly ReplayDirection[] = ["allow_to_deny", "deny_to_allow", "approval_changes"];

/** A changed record found by a replay, numbered in the order found (from 0). */
export interface FoundChange {
  n: number;
  direction: ReplayDirection;
  record: ReplayChange;
}

/** A replay as saved, and when the process running it last saved it. */
export interface SavedReplay {
  view: ReplayView;
  updatedMs: number;
}

/**
 * Replays as the processes running them save them, in the database every CLAIIM process on it
 * shares (tables policy_replays and policy_replay_changes): a replay is read by any process, and
 * it outlives the process that ran it.
 */
export interface ReplayStore {
  /**
   * Saves `view` (its state, counts and progress; its lists of records are not read) and appends
   * `found`, the records it found since its last save. The first save creates the replay.
   */
  save(view: ReplayView, found: FoundChange[], nowMs: number): Promise<void>;
  /** The replay `id`, with every record it found, or null. */
  get(id: string): Promise<SavedReplay | null>;
  /** The newest `limit` replays (of organisation `orgId`, or of all when null), newest first, with their records. */
  list(orgId: string | null, limit: number): Promise<SavedReplay[]>;
  /** Forgets the replays that ended (or whose process stopped saving before `staleBeforeMs`) beyond the newest `keep`. */
  prune(keep: number, staleBeforeMs: number): Promise<number>;
}

/** The view without its lists of records, which are stored one row each. */
function summaryOf(view: ReplayView): string {
  const empty = (side: ReplayView["allow_to_deny"]) => ({ count: side.count, records: [] });
  return JSON.stringify({ ...view, allow_to_deny: empty(view.allow_to_deny), deny_to_allow: empty(view.deny_to_allow), approval_changes: empty(view.approval_changes) });
}

/** A saved summary with its records put back in their lists, in the order found. */
function viewOf(summary: string, changes: { direction: string; record: string }[]): ReplayView {
  const view = JSON.parse(summary) as ReplayView;
  for (const c of changes) {
    if ((REPLAY_DIRECTIONS as readonly string[]).includes(c.direction)) view[c.direction as ReplayDirection].records.push(JSON.parse(c.record) as ReplayChange);
  }
  return view;
}

// A replay keeps at most 10,000 records per direction: appended in bounded statements.
const CHUNK = 500;

export function prismaReplayStore(prisma: Prisma): ReplayStore {
  // On SQLite, Prisma's connection does not wait for the write lock (see openSqliteDriver): writes
  // wait here, between turns of the event loop. On PostgreSQL nothing is retried.
  const write = <T>(work: () => Promise<T>) => whenFree(work);
  const saved = async (rows: { id: string; summary: string; updatedMs: bigint }[]): Promise<SavedReplay[]> => {
    if (rows.length === 0) return [];
    const changes = await prisma.policyReplayChange.findMany({ where: { replayId: { in: rows.map((r) => r.id) } }, orderBy: [{ replayId: "asc" }, { n: "asc" }] });
    const byReplay = new Map<string, typeof changes>();
    for (const c of changes) byReplay.set(c.replayId, [...(byReplay.get(c.replayId) ?? []), c]);
    return rows.map((r) => ({ view: viewOf(r.summary, byReplay.get(r.id) ?? []), updatedMs: Number(r.updatedMs) }));
  };
  return {
    async save(view, found, nowMs) {
      const row = { orgId: view.organization_id, state: view.state, startedMs: BigInt(Date.parse(view.started_at)), updatedMs: BigInt(nowMs), summary: summaryOf(view) };
      await write(() =>
        prisma.$transaction(async (tx) => {
          await tx.policyReplay.upsert({ where: { id: view.id }, create: { id: view.id, ...row }, update: row });
          // A save whose commit went through unbeknown to its caller (a connection lost at COMMIT) is
          // carried again by the next: its records replace themselves rather than break the key.
          if (found.length > 0) await tx.policyReplayChange.deleteMany({ where: { replayId: view.id, n: { gte: found[0].n } } });
          for (let i = 0; i < found.length; i += CHUNK) {
            await tx.policyReplayChange.createMany({ data: found.slice(i, i + CHUNK).map((c) => ({ replayId: view.id, n: c.n, direction: c.direction, record: JSON.stringify(c.record) })) });
          }
        }),
      );
    },
    async get(id) {
      const row = await prisma.policyReplay.findUnique({ where: { id } });
      return row ? (await saved([row]))[0] : null;
    },
    async list(orgId, limit) {
      const rows = await prisma.policyReplay.findMany({ where: orgId === null ? {} : { orgId }, orderBy: [{ startedMs: "desc" }, { id: "asc" }], take: limit });
      return saved(rows);
    },
    async prune(keep, staleBeforeMs) {
      const ended = { OR: [{ state: { not: "running" } }, { updatedMs: { lt: BigInt(staleBeforeMs) } }] };
      const old = await prisma.policyReplay.findMany({ where: ended, orderBy: [{ startedMs: "desc" }, { id: "asc" }], skip: keep, select: { id: true } });
      if (old.length === 0) return 0;
      // Their records go with them (ON DELETE CASCADE).
      const { count } = await write(() => prisma.policyReplay.deleteMany({ where: { id: { in: old.map((r) => r.id) } } }));
      return count;
    },
  };
}
