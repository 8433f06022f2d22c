import { isUniqueViolation } from "../db/duplicate";
import type BetterSqlite3 from "better-sqlite3";
import type pg from "pg";
import { whenFree, type Prisma, type Tx } from "../db/database";
import { ChronConflictError, WRITERS_LOCK, type Checkpoint, type ChronFilter, type ChronLink, type ChronStore, type DecisionCount, type Effect, type EventCount } from "./chron-store";
import type { ChainHead, ChronRow } from "./record";
import {
  appendWithEffect,
  boundsFromRaw,
  CLAIM_SQL,
  collision,
  CHECKPOINT_COLUMNS,
  checkpointFromRaw,
  checkpointValues,
  COLUMNS,
  COUNT_GROUPS,
  countFromRaw,
  eventCountFromRaw,
  eventCountsSql,
  fromRaw,
  HEAD_SQL,
  insertSql,
  linkFromRaw,
  linksSql,
  PER_ROW,
  POSTGRES_DAY,
  pruneIn,
  SQLITE_DAY,
  values,
  versionCountFromRaw,
  versionCounts,
  where,
  type RawBounds,
  type RawCheckpoint,
  type RawCount,
  type RawEventCount,
  type RawLink,
  type RawRow,
  type RawVersionCount,
} from "./chron-sql";

// ChronStore on each database, on the SQL of chron-sql.ts.

/**
 * Chron on SQLite through the better-sqlite3 driver. Each append is one synchronous transaction,
 * so no other work of this process can interleave with it.
 */
export class SqliteChronStore implements ChronStore {
  private readonly appendLocked: BetterSqlite3.Transaction<(build: (head: ChronRow | null) => ChronRow[]) => ChronRow[]>;

  constructor(
    private readonly db: BetterSqlite3.Database,
    private readonly prisma: Prisma,
  ) {
    const insert = db.prepare(`INSERT INTO chron_records (${COLUMNS}) VALUES (${Array(PER_ROW).fill("?").join(", ")})`);
    const headRow = db.prepare(HEAD_SQL);
    // Run with .immediate(): BEGIN IMMEDIATE takes the write lock before the head is read.
    this.appendLocked = db.transaction((build: (head: ChronRow | null) => ChronRow[]) => {
      const head = headRow.get() as RawRow | undefined;
      const rows = build(head ? fromRaw(head) : null);
      for (const row of rows) insert.run(...values(row));
      return rows;
    });
  }

  async head(): Promise<ChainHead | null> {
    const row = this.db.prepare("SELECT seq, hash FROM chron_records ORDER BY seq DESC LIMIT 1").get() as
      | { seq: number; hash: string }
      | undefined;
    return row ? { seq: Number(row.seq), hash: row.hash } : null;
  }

  async append(build: (head: ChronRow | null) => ChronRow[], effect?: Effect): Promise<ChronRow[]> {
    if (effect) return appendWithEffect(this.prisma, build, effect, "sqlite");
    let rows: ChronRow[] = [];
    // busy_timeout is 0: while another connection (another process's, or Prisma's) holds the lock, BEGIN IMMEDIATE fails at once and write() retries.
    await this.write(() => {
      rows = this.appendLocked.immediate(build);
    });
    return rows;
  }

  async bounds(filter: ChronFilter): Promise<{ first: number; last: number; count: number } | null> {
    const w = where(filter, 0, () => "?");
    return boundsFromRaw(this.db.prepare(`SELECT MIN(seq) AS first, MAX(seq) AS last, COUNT(*) AS count FROM chron_records WHERE ${w.sql}`).get(...w.args) as RawBounds);
  }

  async insertCheckpoint(c: Checkpoint): Promise<void> {
    await this.write(() => this.db.prepare(`INSERT INTO chron_checkpoints (${CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`).run(...checkpointValues(c)));
  }

  async checkpoints(afterSeq: number, limit: number): Promise<Checkpoint[]> {
    const rows = this.db.prepare(`SELECT ${CHECKPOINT_COLUMNS} FROM chron_checkpoints WHERE seq > ? ORDER BY seq LIMIT ?`).all(afterSeq, limit) as RawCheckpoint[];
    return rows.map(checkpointFromRaw);
  }

  async lastCheckpoint(): Promise<Checkpoint | null> {
    return this.checkpointAtOrBefore(Number.MAX_SAFE_INTEGER);
  }

  async checkpointAtOrBefore(seq: number): Promise<Checkpoint | null> {
    const row = this.db.prepare(`SELECT ${CHECKPOINT_COLUMNS} FROM chron_checkpoints WHERE seq <= ? ORDER BY seq DESC LIMIT 1`).get(seq) as RawCheckpoint | undefined;
    return row ? checkpointFromRaw(row) : null;
  }

  prune(upToSeq: number, tx: Tx): Promise<number> {
    return pruneIn(tx, upToSeq, () => "?");
  }

  async decisionsByPolicyVersion(orgId?: string): Promise<{ version: number | null; count: number }[]> {
    const rows = this.db.prepare(versionCounts(orgId, "?")).all(...(orgId === undefined ? [] : [orgId])) as RawVersionCount[];
    return rows.map(versionCountFromRaw);
  }

  async decisionCounts(filter: ChronFilter): Promise<DecisionCount[]> {
    const w = where({ ...filter, kind: "decision" }, 0, () => "?");
    const rows = this.db
      .prepare(`SELECT ${SQLITE_DAY} AS day, ${COUNT_GROUPS}, COUNT(*) AS count FROM chron_records WHERE ${w.sql} GROUP BY day, ${COUNT_GROUPS}`)
      .all(...w.args) as RawCount[];
    return rows.map(countFromRaw);
  }

  async eventCounts(filter: ChronFilter, types: readonly string[]): Promise<EventCount[]> {
    if (types.length === 0) return [];
    const q = eventCountsSql(filter, types, SQLITE_DAY, () => "?");
    return (this.db.prepare(q.sql).all(...q.args) as RawEventCount[]).map(eventCountFromRaw);
  }

  /** A synchronous write, retried while another connection (another process's, or Prisma's across an effect's await) holds the write lock. */
  private async write(work: () => void): Promise<void> {
    try {
      await whenFree(work);
    } catch (err) {
      if (isUniqueViolation(err)) throw collision(err);
      throw err;
    }
  }

  async list(filter: ChronFilter, afterSeq: number, limit: number, order: "asc" | "desc" = "asc"): Promise<ChronRow[]> {
    const w = where(filter, afterSeq, () => "?");
    const rows = this.db
      .prepare(`SELECT ${COLUMNS} FROM chron_records WHERE ${w.sql} ORDER BY seq ${order === "desc" ? "DESC" : "ASC"} LIMIT ?`)
      .all(...w.args, limit) as RawRow[];
    return rows.map(fromRaw);
  }

  async latest(filter: ChronFilter, limit: number): Promise<ChronRow[]> {
    const w = where(filter, 0, () => "?");
    const rows = this.db.prepare(`SELECT ${COLUMNS} FROM chron_records WHERE ${w.sql} ORDER BY seq DESC LIMIT ?`).all(...w.args, limit) as RawRow[];
    return rows.map(fromRaw).reverse();
  }

  async claimOf(agentId: string, key: string): Promise<ChronRow | null> {
    const row = this.db.prepare(CLAIM_SQL("?", "?")).get(agentId, key) as RawRow | undefined;
    return row ? fromRaw(row) : null;
  }

  async links(afterSeq: number, upTo: number, limit: number): Promise<ChronLink[]> {
    return (this.db.prepare(linksSql(() => "?")).all(afterSeq, upTo, limit) as RawLink[]).map(linkFromRaw);
  }
}

/** Chron on PostgreSQL through node-postgres: one multi-row INSERT per batch, which is atomic. */
export class PostgresChronStore implements ChronStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly prisma: Prisma,
  ) {}

  async head(): Promise<ChainHead | null> {
    const { rows } = await this.pool.query<{ seq: string; hash: string }>(
      "SELECT seq, hash FROM chron_records ORDER BY seq DESC LIMIT 1",
    );
    return rows[0] ? { seq: Number(rows[0].seq), hash: rows[0].hash } : null;
  }

  async append(build: (head: ChronRow | null) => ChronRow[], effect?: Effect): Promise<ChronRow[]> {
    if (effect) return appendWithEffect(this.prisma, build, effect, "postgresql");
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      // One round trip: in READ COMMITTED each statement takes a new snapshot, so the head is read after the lock is held.
      const results = (await client.query(`BEGIN; SELECT pg_advisory_xact_lock(${WRITERS_LOCK}); ${HEAD_SQL}`)) as unknown as pg.QueryResult<RawRow>[];
      const head = results[2].rows[0];
      const rows = build(head ? fromRaw(head) : null);
      await client.query(insertSql(rows.length, (i) => `$${i}`), rows.flatMap(values));
      await client.query("COMMIT");
      return rows;
    } catch (err) {
      await client.query("ROLLBACK").catch((e: Error) => (broken = e));
      if (isUniqueViolation(err)) throw collision(err);
      throw err;
    } finally {
      client.release(broken);
    }
  }

  async bounds(filter: ChronFilter): Promise<{ first: number; last: number; count: number } | null> {
    const w = where(filter, 0, (i) => `$${i}`);
    const { rows } = await this.pool.query<RawBounds>(`SELECT MIN(seq) AS first, MAX(seq) AS last, COUNT(*) AS count FROM chron_records WHERE ${w.sql}`, w.args);
    return boundsFromRaw(rows[0]);
  }

  async insertCheckpoint(c: Checkpoint): Promise<void> {
    try {
      await this.pool.query(`INSERT INTO chron_checkpoints (${CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)`, checkpointValues(c));
    } catch (err) {
      if (isUniqueViolation(err)) throw new ChronConflictError((err as Error).message);
      throw err;
    }
  }

  async checkpoints(afterSeq: number, limit: number): Promise<Checkpoint[]> {
    const { rows } = await this.pool.query<RawCheckpoint>(`SELECT ${CHECKPOINT_COLUMNS} FROM chron_checkpoints WHERE seq > $1 ORDER BY seq LIMIT $2`, [afterSeq, limit]);
    return rows.map(checkpointFromRaw);
  }

  prune(upToSeq: number, tx: Tx): Promise<number> {
    return pruneIn(tx, upToSeq, (i) => `$${i}`);
  }

  async decisionsByPolicyVersion(orgId?: string): Promise<{ version: number | null; count: number }[]> {
    const { rows } = await this.pool.query<RawVersionCount>(versionCounts(orgId, "$1"), orgId === undefined ? [] : [orgId]);
    return rows.map(versionCountFromRaw);
  }

  async decisionCounts(filter: ChronFilter): Promise<DecisionCount[]> {
    const w = where({ ...filter, kind: "decision" }, 0, (i) => `$${i}`);
    const day = POSTGRES_DAY;
    const { rows } = await this.pool.query<RawCount>(
      `SELECT ${day} AS day, ${COUNT_GROUPS}, COUNT(*) AS count FROM chron_records WHERE ${w.sql} GROUP BY ${day}, ${COUNT_GROUPS}`,
      w.args,
    );
    return rows.map(countFromRaw);
  }

  async eventCounts(filter: ChronFilter, types: readonly string[]): Promise<EventCount[]> {
    if (types.length === 0) return [];
    const q = eventCountsSql(filter, types, POSTGRES_DAY, (i) => `$${i}`);
    return (await this.pool.query<RawEventCount>(q.sql, q.args)).rows.map(eventCountFromRaw);
  }

  async lastCheckpoint(): Promise<Checkpoint | null> {
    return this.checkpointAtOrBefore(Number.MAX_SAFE_INTEGER);
  }

  async checkpointAtOrBefore(seq: number): Promise<Checkpoint | null> {
    const { rows } = await this.pool.query<RawCheckpoint>(`SELECT ${CHECKPOINT_COLUMNS} FROM chron_checkpoints WHERE seq <= $1 ORDER BY seq DESC LIMIT 1`, [seq]);
    return rows[0] ? checkpointFromRaw(rows[0]) : null;
  }

  async list(filter: ChronFilter, afterSeq: number, limit: number, order: "asc" | "desc" = "asc"): Promise<ChronRow[]> {
    const w = where(filter, afterSeq, (i) => `$${i}`);
    const { rows } = await this.pool.query<RawRow>(
      `SELECT ${COLUMNS} FROM chron_records WHERE ${w.sql} ORDER BY seq ${order === "desc" ? "DESC" : "ASC"} LIMIT $${w.args.length + 1}`,
      [...w.args, limit],
    );
    return rows.map(fromRaw);
  }

  async latest(filter: ChronFilter, limit: number): Promise<ChronRow[]> {
    const w = where(filter, 0, (i) => `$${i}`);
    const { rows } = await this.pool.query<RawRow>(`SELECT ${COLUMNS} FROM chron_records WHERE ${w.sql} ORDER BY seq DESC LIMIT $${w.args.length + 1}`, [...w.args, limit]);
    return rows.map(fromRaw).reverse();
  }

  async claimOf(agentId: string, key: string): Promise<ChronRow | null> {
    const { rows } = await this.pool.query<RawRow>(CLAIM_SQL("$1", "$2"), [agentId, key]);
    return rows[0] ? fromRaw(rows[0]) : null;
  }

  async links(afterSeq: number, upTo: number, limit: number): Promise<ChronLink[]> {
    return (await this.pool.query<RawLink>(linksSql((i) => `$${i}`), [afterSeq, upTo, limit])).rows.map(linkFromRaw);
  }
}
