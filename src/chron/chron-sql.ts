// The SQL both Chron stores share (sql-chron-store.ts): the columns and how a row maps to them, the
// WHERE clause of a filter, the counting queries, pruning, and an append inside a Prisma
// transaction. Each renders its placeholders through `param(i)` (`?` on SQLite, `$i` on PostgreSQL).
import { isUniqueViolation } from "../db/duplicate";
import { isSqliteBusy, whenFree, type Prisma, type Tx } from "../db/database";
import { ChronConflictError, IdempotencyKeyTaken, WRITERS_LOCK, type Checkpoint, type ChronLink, type ChronFilter, type DecisionCount, type Effect, type EventCount } from "./chron-store";
import type { ChronRow } from "./record";

export const COLUMNS = "seq, id, kind, ts_ms, org_id, agent_id, owner_id, action, decision, policy_version, content, prev_hash, hash, tag, idempotency_key";
export const PER_ROW = 15;

export type RawRow = {
  seq: number | string | bigint;
  id: string;
  kind: string;
  ts_ms: number | string | bigint;
  org_id: string | null;
  agent_id: string | null;
  owner_id: string | null;
  action: string | null;
  decision: string | null;
  policy_version: number | string | bigint | null;
  content: string;
  prev_hash: string;
  hash: string;
  tag: string | null;
  idempotency_key: string | null;
};

export function fromRaw(r: RawRow): ChronRow {
  return {
    seq: Number(r.seq),
    id: r.id,
    kind: r.kind,
    tsMs: Number(r.ts_ms),
    orgId: r.org_id,
    agentId: r.agent_id,
    ownerId: r.owner_id,
    action: r.action,
    decision: r.decision,
    policyVersion: r.policy_version === null ? null : Number(r.policy_version),
    content: r.content,
    prevHash: r.prev_hash,
    hash: r.hash,
    tag: r.tag,
    idempotencyKey: r.idempotency_key,
  };
}

export const CHECKPOINT_COLUMNS = "seq, hash, ts_ms, count, kid, jws, frontier";

export type RawCheckpoint = { seq: number | string | bigint; hash: string; ts_ms: number | string | bigint; count: number | string | bigint; kid: string; jws: string; frontier: string | null };

export function checkpointFromRaw(r: RawCheckpoint): Checkpoint {
  return { seq: Number(r.seq), hash: r.hash, tsMs: Number(r.ts_ms), count: Number(r.count), kid: r.kid, jws: r.jws, frontier: r.frontier };
}

export function checkpointValues(c: Checkpoint): unknown[] {
  return [c.seq, c.hash, c.tsMs, c.count, c.kid, c.jws, c.frontier];
}

/** The same statements on both databases; the window row exists only inside this transaction. */
export async function pruneIn(tx: Tx, upToSeq: number, param: (i: number) => string): Promise<number> {
  await tx.$executeRawUnsafe(`INSERT INTO chron_prune_window (up_to_seq) VALUES (${param(1)})`, upToSeq);
  const deleted = await tx.$executeRawUnsafe(`DELETE FROM chron_records WHERE seq <= ${param(1)}`, upToSeq);
  await tx.$executeRawUnsafe(`DELETE FROM chron_checkpoints WHERE seq < ${param(1)}`, upToSeq);
  await tx.$executeRawUnsafe(`DELETE FROM chron_prune_window WHERE up_to_seq = ${param(1)}`, upToSeq);
  return deleted;
}

export type RawCount = { day: string; agent_id: string | null; owner_id: string | null; action: string | null; policy_version: number | string | bigint | null; decision: string; count: number | string | bigint };

export function countFromRaw(r: RawCount): DecisionCount {
  return {
    day: r.day,
    agentId: r.agent_id,
    ownerId: r.owner_id,
    action: r.action,
    policyVersion: r.policy_version === null ? null : Number(r.policy_version),
    decision: r.decision,
    count: Number(r.count),
  };
}

export const COUNT_GROUPS = "agent_id, owner_id, action, policy_version, decision";

export function versionCounts(orgId: string | undefined, param: string): string {
  return `SELECT policy_version, COUNT(*) AS count FROM chron_records WHERE kind = 'decision'${orgId === undefined ? "" : ` AND org_id = ${param}`} GROUP BY policy_version ORDER BY policy_version`;
}
/** A row's UTC day, YYYY-MM-DD, in each dialect. */
export const SQLITE_DAY = "date(ts_ms / 1000, 'unixepoch')";
export const POSTGRES_DAY = "to_char(to_timestamp(ts_ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')";

/** Events of the given types, per day; `day` is the dialect's expression for a row's UTC day. */
export function eventCountsSql(filter: ChronFilter, types: readonly string[], day: string, param: (i: number) => string): { sql: string; args: unknown[] } {
  const w = where({ ...filter, kind: "event" }, 0, param);
  const placeholders = types.map((_, i) => param(w.args.length + i + 1)).join(", ");
  return {
    sql: `SELECT ${day} AS day, action AS type, COUNT(*) AS count FROM chron_records WHERE ${w.sql} AND action IN (${placeholders}) GROUP BY ${day}, action`,
    args: [...w.args, ...types],
  };
}

export type RawEventCount = { day: string; type: string; count: number | string | bigint };
export const eventCountFromRaw = (r: RawEventCount): EventCount => ({ day: r.day, type: r.type, count: Number(r.count) });

export type RawVersionCount = { policy_version: number | string | bigint | null; count: number | string | bigint };

export function versionCountFromRaw(r: RawVersionCount): { version: number | null; count: number } {
  return { version: r.policy_version === null ? null : Number(r.policy_version), count: Number(r.count) };
}

export type RawBounds = { first: number | string | bigint | null; last: number | string | bigint | null; count: number | string | bigint };

export function boundsFromRaw(r: RawBounds | undefined): { first: number; last: number; count: number } | null {
  return r && r.first !== null && r.last !== null ? { first: Number(r.first), last: Number(r.last), count: Number(r.count) } : null;
}

export function values(r: ChronRow): unknown[] {
  return [r.seq, r.id, r.kind, r.tsMs, r.orgId, r.agentId, r.ownerId, r.action, r.decision, r.policyVersion, r.content, r.prevHash, r.hash, r.tag, r.idempotencyKey ?? null];
}

/** WHERE clause shared by both dialects; `param(i)` renders the i-th placeholder (1-based). */
export function where(filter: ChronFilter, afterSeq: number, param: (i: number) => string): { sql: string; args: unknown[] } {
  const clauses: string[] = [];
  const args: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    args.push(value);
    clauses.push(sql.replace("?", param(args.length)));
  };
  add("seq > ?", afterSeq);
  if (filter.fromSeq !== undefined) add("seq >= ?", filter.fromSeq);
  if (filter.toSeq !== undefined) add("seq <= ?", filter.toSeq);
  if (filter.kind !== undefined) add("kind = ?", filter.kind);
  if (filter.orgId !== undefined) add("org_id = ?", filter.orgId);
  if (filter.agentId !== undefined) add("agent_id = ?", filter.agentId);
  if (filter.ownerId !== undefined) add("owner_id = ?", filter.ownerId);
  if (filter.decision !== undefined) add("decision = ?", filter.decision);
  if (filter.action !== undefined) add("action = ?", filter.action);
  if (filter.policyVersion !== undefined) add("policy_version = ?", filter.policyVersion);
  if (filter.fromMs !== undefined) add("ts_ms >= ?", filter.fromMs);
  if (filter.toMs !== undefined) add("ts_ms < ?", filter.toMs);
  return { sql: clauses.join(" AND "), args };
}

export function insertSql(rows: number, param: (i: number) => string): string {
  const tuples = Array.from({ length: rows }, (_, r) => `(${Array.from({ length: PER_ROW }, (_, c) => param(r * PER_ROW + c + 1)).join(", ")})`);
  return `INSERT INTO chron_records (${COLUMNS}) VALUES ${tuples.join(", ")}`;
}

/**
 * What a unique violation on chron_records means: a record already claims one of the batch's
 * Idempotency-Keys (the index "chron_records_idempotency_key", over agent_id and
 * idempotency_key), or another writer took the seq or id first. Each database names the index or
 * its columns in its own way; all of them mention idempotency_key.
 */
export function collision(err: unknown): Error {
  const e = err as { message?: unknown; constraint?: unknown; meta?: unknown; cause?: unknown };
  const said = `${String(e?.message ?? "")} ${String(e?.constraint ?? "")} ${JSON.stringify(e?.meta ?? null)} ${String((e?.cause as Error | undefined)?.message ?? "")}`;
  return /idempotency_key/.test(said) ? new IdempotencyKeyTaken((err as Error).message) : new ChronConflictError((err as Error).message);
}

/** The record holding an agent's Idempotency-Key: one at most, by the partial unique index the query names the columns of. */
export const CLAIM_SQL = (agent: string, key: string) => `SELECT ${COLUMNS} FROM chron_records WHERE agent_id = ${agent} AND idempotency_key = ${key} AND idempotency_key IS NOT NULL`;

export const LINK_COLUMNS = "seq, prev_hash, hash, tag";
export type RawLink = Pick<RawRow, "seq" | "prev_hash" | "hash" | "tag">;
export const linkFromRaw = (r: RawLink): ChronLink => ({ seq: Number(r.seq), prevHash: r.prev_hash, hash: r.hash, tag: r.tag });
export const linksSql = (param: (i: number) => string) => `SELECT ${LINK_COLUMNS} FROM chron_records WHERE seq > ${param(1)} AND seq <= ${param(2)} ORDER BY seq LIMIT ${param(3)}`;

export const HEAD_SQL = `SELECT ${COLUMNS} FROM chron_records ORDER BY seq DESC LIMIT 1`;

/**
 * Appends rows together with a state change, in one Prisma interactive transaction, under the
 * writers' lock (see ChronStore.append): taken by the transaction's first statement, so that the
 * effect, the head and the insert all happen while no other writer, of this process or another,
 * can append. On SQLite an empty DELETE is the first statement because Prisma opens a deferred
 * transaction: any write statement takes the database's write lock, rows or not, and a read first
 * would leave the transaction on a snapshot another process could outdate before the insert.
 * WARNING: on SQLite this runs on Prisma's connection, not the driver's; that is safe because the
 * driver never holds the write lock across an await (its appends are synchronous), and it retries
 * asynchronously while this transaction holds it. Prisma's connection does not wait for the lock
 * either (busy_timeout 0, see openSqliteDriver): while another holds it, the first statement fails
 * with SQLITE_BUSY and the whole transaction is tried again after a moment (whenFree). Only then:
 * once the lock is taken, the effect has run, and an error is the change's own.
 */
export async function appendWithEffect(prisma: Prisma, build: (head: ChronRow | null) => ChronRow[], effect: Effect, dialect: "sqlite" | "postgresql"): Promise<ChronRow[]> {
  const param = dialect === "sqlite" ? () => "?" : (i: number) => `$${i}`;
  let locked = false;
  const attempt = () => {
    locked = false;
    return prisma.$transaction(async (tx) => {
      await tx.$executeRawUnsafe(dialect === "sqlite" ? "DELETE FROM chron_prune_window WHERE 0" : `SELECT pg_advisory_xact_lock(${WRITERS_LOCK})`);
      locked = true;
      await effect(tx);
      const [head] = await tx.$queryRawUnsafe<RawRow[]>(HEAD_SQL);
      const rows = build(head ? fromRaw(head) : null);
      try {
        await tx.$executeRawUnsafe(insertSql(rows.length, param), ...rows.flatMap(values));
      } catch (err) {
        if (isUniqueViolation(err)) throw collision(err);
        throw err;
      }
      return rows;
    });
  };
  return dialect === "sqlite" ? whenFree(attempt, (err) => !locked && isSqliteBusy(err)) : attempt();
}
