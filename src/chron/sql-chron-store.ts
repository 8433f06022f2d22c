import { isUniqueViolation } from "../db/duplicate";
import type BetterSqlite3 from "better-sqlite3";
import type pg from "pg";
import type { Prisma, Tx } from "../db/database";
import { ChronConflictError, WRITERS_LOCK, type Checkpoint, type ChronFilter, type ChronStore, type DecisionCount, type Effect, type EventCount } from "./chron-store";
import type { ChainHead, ChronRow } from "./record";

const COLUMNS = "seq, id, kind, ts_ms, org_id, agent_id, owner_id, action, decision, policy_version, content, prev_hash, hash, tag";
const PER_ROW = 14;

type RawRow = {
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
};

function fromRaw(r: RawRow): ChronRow {
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
  };
}

const CHECKPOINT_COLUMNS = "seq, hash, ts_ms, count, kid, jws, frontier";

type RawCheckpoint = { seq: number | string | bigint; hash: string; ts_ms: number | string | bigint; count: number | string | bigint; kid: string; jws: string; frontier: string | null };

function checkpointFromRaw(r: RawCheckpoint): Checkpoint {
  return { seq: Number(r.seq), hash: r.hash, tsMs: Number(r.ts_ms), count: Number(r.count), kid: r.kid, jws: r.jws, frontier: r.frontier };
}

function checkpointValues(c: Checkpoint): unknown[] {
  return [c.seq, c.hash, c.tsMs, c.count, c.kid, c.jws, c.frontier];
}

/** The same statements on both databases; the window row exists only inside this transaction. */
async function pruneIn(tx: Tx, upToSeq: number, param: (i: number) => string): Promise<number> {
  await tx.$executeRawUnsafe(`INSERT INTO chron_prune_window (up_to_seq) VALUES (${param(1)})`, upToSeq);
  const deleted = await tx.$executeRawUnsafe(`DELETE FROM chron_records WHERE seq <= ${param(1)}`, upToSeq);
  await tx.$executeRawUnsafe(`DELETE FROM chron_checkpoints WHERE seq < ${param(1)}`, upToSeq);
  await tx.$executeRawUnsafe(`DELETE FROM chron_prune_window WHERE up_to_seq = ${param(1)}`, upToSeq);
  return deleted;
}

type RawCount = { day: string; agent_id: string | null; owner_id: string | null; action: string | null; policy_version: number | string | bigint | null; decision: string; count: number | string | bigint };

function countFromRaw(r: RawCount): DecisionCount {
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

const COUNT_GROUPS = "agent_id, owner_id, action, policy_version, decision";

function versionCounts(orgId: string | undefined, param: string): string {
  return `SELECT policy_version, COUNT(*) AS count FROM chron_records WHERE kind = 'decision'${orgId === undefined ? "" : ` AND org_id = ${param}`} GROUP BY policy_version ORDER BY policy_version`;
}
/** A row's UTC day, YYYY-MM-DD, in each dialect. */
const SQLITE_DAY = "date(ts_ms / 1000, 'unixepoch')";
const POSTGRES_DAY = "to_char(to_timestamp(ts_ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')";

/** Events of the given types, per day; `day` is the dialect's expression for a row's UTC day. */
function eventCountsSql(filter: ChronFilter, types: readonly string[], day: string, param: (i: number) => string): { sql: string; args: unknown[] } {
  const w = where({ ...filter, kind: "event" }, 0, param);
  const placeholders = types.map((_, i) => param(w.args.length + i + 1)).join(", ");
  return {
    sql: `SELECT ${day} AS day, action AS type, COUNT(*) AS count FROM chron_records WHERE ${w.sql} AND action IN (${placeholders}) GROUP BY ${day}, action`,
    args: [...w.args, ...types],
  };
}

type RawEventCount = { day: string; type: string; count: number | string | bigint };
const eventCountFromRaw = (r: RawEventCount): EventCount => ({ day: r.day, type: r.type, count: Number(r.count) });

type RawVersionCount = { policy_version: number | string | bigint | null; count: number | string | bigint };

function versionCountFromRaw(r: RawVersionCount): { version: number | null; count: number } {
  return { version: r.policy_version === null ? null : Number(r.policy_version), count: Number(r.count) };
}

type RawBounds = { first: number | string | bigint | null; last: number | string | bigint | null; count: number | string | bigint };

function boundsFromRaw(r: RawBounds | undefined): { first: number; last: number; count: number } | null {
  return r && r.first !== null && r.last !== null ? { first: Number(r.first), last: Number(r.last), count: Number(r.count) } : null;
}

function values(r: ChronRow): unknown[] {
  return [r.seq, r.id, r.kind, r.tsMs, r.orgId, r.agentId, r.ownerId, r.action, r.decision, r.policyVersion, r.content, r.prevHash, r.hash, r.tag];
}

/** WHERE clause shared by both dialects; `param(i)` renders the i-th placeholder (1-based). */
function where(filter: ChronFilter, afterSeq: number, param: (i: number) => string): { sql: string; args: unknown[] } {
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

function insertSql(rows: number, param: (i: number) => string): string {
  const tuples = Array.from({ length: rows }, (_, r) => `(${Array.from({ length: PER_ROW }, (_, c) => param(r * PER_ROW + c + 1)).join(", ")})`);
  return `INSERT INTO chron_records (${COLUMNS}) VALUES ${tuples.join(", ")}`;
}

const HEAD_SQL = `SELECT ${COLUMNS} FROM chron_records ORDER BY seq DESC LIMIT 1`;

/**
 * Appends rows together with a state change, in one Prisma interactive transaction, under the
 * writers' lock (see ChronStore.append): taken by the transaction's first statement, so that the
 * effect, the head and the insert all happen while no other writer, of this process or another,
 * can append. On SQLite an empty DELETE is the first statement because Prisma opens a deferred
 * transaction: any write statement takes the database's write lock, rows or not, and a read first
 * would leave the transaction on a snapshot another process could outdate before the insert.
 * WARNING: on SQLite this runs on Prisma's connection, not the driver's; that is safe because the
 * driver never holds the write lock across an await (its appends are synchronous), and it retries
 * asynchronously while this transaction holds it.
 */
async function appendWithEffect(prisma: Prisma, build: (head: ChronRow | null) => ChronRow[], effect: Effect, dialect: "sqlite" | "postgresql"): Promise<ChronRow[]> {
  const param = dialect === "sqlite" ? () => "?" : (i: number) => `$${i}`;
  return prisma.$transaction(async (tx) => {
    await tx.$executeRawUnsafe(dialect === "sqlite" ? "DELETE FROM chron_prune_window WHERE 0" : `SELECT pg_advisory_xact_lock(${WRITERS_LOCK})`);
    await effect(tx);
    const [head] = await tx.$queryRawUnsafe<RawRow[]>(HEAD_SQL);
    const rows = build(head ? fromRaw(head) : null);
    try {
      await tx.$executeRawUnsafe(insertSql(rows.length, param), ...rows.flatMap(values));
    } catch (err) {
      if (isUniqueViolation(err)) throw new ChronConflictError((err as Error).message);
      throw err;
    }
    return rows;
  });
}

const BUSY_RETRY_MS = 2;
const BUSY_DEADLINE_MS = 5000;

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

  /** A synchronous write, retried while another connection of this process holds the write lock. */
  private async write(work: () => void): Promise<void> {
    const deadline = Date.now() + BUSY_DEADLINE_MS;
    for (;;) {
      try {
        work();
        return;
      } catch (err) {
        const code = (err as { code?: string }).code ?? "";
        if (isUniqueViolation(err)) throw new ChronConflictError((err as Error).message);
        // Prisma's connection holds the write lock across an await (an effect's transaction): let it finish.
        if (code.startsWith("SQLITE_BUSY") && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, BUSY_RETRY_MS));
          continue;
        }
        throw err;
      }
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
      if (isUniqueViolation(err)) throw new ChronConflictError((err as Error).message);
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
}
