import { NOW_MS_SQL, whenFree, type DatabaseKind, type Prisma } from "../db/database";
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

/**
 * A replay as saved, when the process running it last saved it, and how long ago that was: both on
 * the database's clock, which every process shares, whatever the clocks of their machines say.
 */
export interface SavedReplay {
  view: ReplayView;
  updatedMs: number;
  ageMs: number;
}

/**
 * Replays as the processes running them save them, in the database every CLAIIM process on it
 * shares (tables policy_replays and policy_replay_changes): a replay is read by any process, and
 * it outlives the process that ran it.
 */
export interface ReplayStore {
  /**
   * Saves `view` (its state, counts and progress; its lists of records are not read) and appends
   * `found`, the records it found since its last save, stamped with the database's time. The first
   * save creates the replay.
   */
  save(view: ReplayView, found: FoundChange[]): Promise<void>;
  /** The replay `id`, with every record it found, or null. */
  get(id: string): Promise<SavedReplay | null>;
  /** The newest `limit` replays (of organisation `orgId`, or of all when null), newest first, with their records. */
  list(orgId: string | null, limit: number): Promise<SavedReplay[]>;
  /** Forgets the replays that ended (or whose process has not saved them for `staleMs`) beyond the newest `keep`. */
  prune(keep: number, staleMs: number): Promise<number>;
}

/** What a replay counts as it starts: nothing processed of `total`, nothing found. */
export function noneFound(total: number): Pick<ReplayView, "progress" | "unchanged" | "skipped" | "redacted" | "bounds_exceeded" | ReplayDirection | "truncated"> {
  const side = () => ({ count: 0, records: [] });
  return { progress: { processed: 0, total }, unchanged: 0, skipped: 0, redacted: 0, bounds_exceeded: 0, allow_to_deny: side(), deny_to_allow: side(), approval_changes: side(), truncated: false };
}

/** A copy of the view as it is now, without its lists of records (a replay's records are stored one row each). */
export function withoutRecords(view: ReplayView): ReplayView {
  const side = (s: ReplayView[ReplayDirection]) => ({ count: s.count, records: [] });
  return { ...view, progress: { ...view.progress }, allow_to_deny: side(view.allow_to_deny), deny_to_allow: side(view.deny_to_allow), approval_changes: side(view.approval_changes) };
}

function parsed(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * A saved summary with its records put back in their lists, in the order found. A row that is not
 * what CLAIIM saved (edited by hand, say) never fails a read: a summary that cannot be read gives a
 * failed replay that says so, and a record that cannot be read is left out, which its view says.
 * (Replays are not evidence, Chron is: a replay can always be run again.)
 */
function viewOf(row: { id: string; orgId: string | null; startedMs: bigint; summary: string }, changes: { direction: string; record: string }[]): ReplayView {
  const view = parsed(row.summary);
  const sides = isObject(view) && REPLAY_DIRECTIONS.every((d) => isObject(view[d]) && Array.isArray((view[d] as { records?: unknown }).records));
  // The organisation is the row's, which lists and finds it: a summary that names another is not read.
  if (!isObject(view) || view.id !== row.id || view.organization_id !== row.orgId || !sides) return unreadable(row);
  const replay = view as unknown as ReplayView;
  let lost = 0;
  for (const c of changes) {
    const record = parsed(c.record);
    if ((REPLAY_DIRECTIONS as readonly string[]).includes(c.direction) && isObject(record)) replay[c.direction as ReplayDirection].records.push(record as unknown as ReplayChange);
    else lost += 1;
  }
  if (lost > 0) replay.error = `${lost} of its records as saved in the database could not be read and are left out${replay.error ? `; ${replay.error}` : ""}`;
  return replay;
}

function unreadable(row: { id: string; orgId: string | null; startedMs: bigint }): ReplayView {
  const started = new Date(Number(row.startedMs)).toISOString();
  return {
    id: row.id,
    version: 0,
    revision: "",
    from: started,
    to: started,
    organization_id: row.orgId,
    requested_by: "",
    state: "failed",
    started_at: started,
    finished_at: null,
    error: "this replay as saved in the database could not be read; run it again",
    ...noneFound(0),
  };
}

// A replay keeps at most 10,000 records per direction: appended in bounded statements.
const CHUNK = 500;

export function prismaReplayStore(prisma: Prisma, kind: DatabaseKind): ReplayStore {
  // On SQLite, Prisma's connection does not wait for the write lock (see openSqliteDriver): writes
  // wait here, between turns of the event loop. On PostgreSQL nothing is retried.
  const write = <T>(work: () => Promise<T>) => whenFree(work);
  // WARNING: a replay's staleness compares the time it was saved with the time it is read: both
  // must be on the database's clock, or a replica whose clock runs a minute ahead would report
  // every replay that another replica runs as failed.
  const now = async (client: Pick<Prisma, "$queryRawUnsafe"> = prisma): Promise<number> => Number((await client.$queryRawUnsafe<{ now: bigint | number }[]>(`SELECT ${NOW_MS_SQL[kind]} AS now`))[0].now);
  const saved = async (rows: { id: string; orgId: string | null; startedMs: bigint; summary: string; updatedMs: bigint }[]): Promise<SavedReplay[]> => {
    if (rows.length === 0) return [];
    const changes = await prisma.policyReplayChange.findMany({ where: { replayId: { in: rows.map((r) => r.id) } }, orderBy: [{ replayId: "asc" }, { n: "asc" }] });
    const byReplay = new Map<string, typeof changes>();
    for (const c of changes) byReplay.set(c.replayId, [...(byReplay.get(c.replayId) ?? []), c]);
    const readMs = await now();
    return rows.map((r) => ({ view: viewOf(r, byReplay.get(r.id) ?? []), updatedMs: Number(r.updatedMs), ageMs: readMs - Number(r.updatedMs) }));
  };
  return {
    async save(view, found) {
      await write(() =>
        prisma.$transaction(async (tx) => {
          const row = { orgId: view.organization_id, state: view.state, startedMs: BigInt(Date.parse(view.started_at)), updatedMs: BigInt(await now(tx)), summary: JSON.stringify(withoutRecords(view)) };
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
    async prune(keep, staleMs) {
      const ended = { OR: [{ state: { not: "running" } }, { updatedMs: { lt: BigInt((await now()) - staleMs) } }] };
      const old = await prisma.policyReplay.findMany({ where: ended, orderBy: [{ startedMs: "desc" }, { id: "asc" }], skip: keep, select: { id: true } });
      if (old.length === 0) return 0;
      // Their records go with them (ON DELETE CASCADE).
      const { count } = await write(() => prisma.policyReplay.deleteMany({ where: { id: { in: old.map((r) => r.id) } } }));
      return count;
    },
  };
}
