import { whenFree, type Database } from "../db/database";
import type { WitnessedHead } from "./witness";

/** The last head of a log, as its witness holds it. */
export interface HeldHead {
  tree_size: number;
  root: string;
}

/** One stored head: its size, its root, and its line as received. */
export interface HeldLine {
  tree_size: number;
  root: string;
  line: string;
}

/**
 * The heads this CLAIIM holds as the witness of other CLAIIMs, one log per witness key, in the
 * database that every CLAIIM process on it shares (table `witness_heads`).
 */
export interface ReceivedHeadStore {
  /** The largest head held for `log`, or null when it holds none. */
  last(log: string): Promise<HeldHead | null>;
  /**
   * Stores `heads` (in order, each extending the one before) after the head of size `from` (0: the
   * log's first), all or none. False, storing nothing, when that head was extended already (by
   * another process): the caller reads the last head again.
   */
  extend(log: string, from: number, heads: WitnessedHead[]): Promise<boolean>;
  /** The heads of `log` larger than `after`, smallest first, at most `limit`. */
  lines(log: string, after: number, limit: number): Promise<HeldLine[]>;
}

/** One row per head: from_size chains the rows (see the migration witness_heads). */
function rowsOf(from: number, heads: WitnessedHead[], receivedMs: number): [number, number, string, string, number][] {
  return heads.map((h, i) => [h.tree_size, i === 0 ? from : heads[i - 1].tree_size, h.root, JSON.stringify(h), receivedMs]);
}

/** A unique or primary key refused the row: another process stored a head there first. */
function taken(err: unknown): boolean {
  const code = String((err as { code?: unknown }).code);
  return code === "23505" || code === "SQLITE_CONSTRAINT_PRIMARYKEY" || code === "SQLITE_CONSTRAINT_UNIQUE";
}

// An import (start-up) may bring thousands of heads at once: inserted in bounded statements.
const CHUNK = 200;

export function sqlReceivedHeadStore(db: Database): ReceivedHeadStore {
  if (db.kind === "sqlite") {
    const sqlite = db.sqlite;
    const insert = sqlite.prepare("INSERT INTO witness_heads (log, tree_size, from_size, root, line, received_ms) VALUES (?, ?, ?, ?, ?, ?)");
    const store = sqlite.transaction((log: string, rows: ReturnType<typeof rowsOf>) => {
      for (const r of rows) insert.run(log, ...r);
    });
    return {
      async last(log) {
        const row = sqlite.prepare("SELECT tree_size, root FROM witness_heads WHERE log = ? ORDER BY tree_size DESC LIMIT 1").get(log) as { tree_size: number; root: string } | undefined;
        return row ? { tree_size: Number(row.tree_size), root: row.root } : null;
      },
      async extend(log, from, heads) {
        const rows = rowsOf(from, heads, Date.now());
        try {
          // IMMEDIATE: the write lock is taken at BEGIN, so that a busy database is retried before anything is written.
          await whenFree(() => store.immediate(log, rows));
          return true;
        } catch (err) {
          if (taken(err)) return false;
          throw err;
        }
      },
      async lines(log, after, limit) {
        const rows = sqlite.prepare("SELECT tree_size, root, line FROM witness_heads WHERE log = ? AND tree_size > ? ORDER BY tree_size LIMIT ?").all(log, after, limit) as { tree_size: number; root: string; line: string }[];
        return rows.map((r) => ({ tree_size: Number(r.tree_size), root: r.root, line: r.line }));
      },
    };
  }
  const pool = db.pool;
  return {
    async last(log) {
      const { rows } = await pool.query<{ tree_size: string; root: string }>("SELECT tree_size, root FROM witness_heads WHERE log = $1 ORDER BY tree_size DESC LIMIT 1", [log]);
      return rows[0] ? { tree_size: Number(rows[0].tree_size), root: rows[0].root } : null;
    },
    async extend(log, from, heads) {
      const rows = rowsOf(from, heads, Date.now());
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        for (let i = 0; i < rows.length; i += CHUNK) {
          const chunk = rows.slice(i, i + CHUNK);
          const values = chunk.map((_, j) => `($1, $${j * 5 + 2}, $${j * 5 + 3}, $${j * 5 + 4}, $${j * 5 + 5}, $${j * 5 + 6})`).join(", ");
          await client.query(`INSERT INTO witness_heads (log, tree_size, from_size, root, line, received_ms) VALUES ${values}`, [log, ...chunk.flat()]);
        }
        await client.query("COMMIT");
        return true;
      } catch (err) {
        await client.query("ROLLBACK").catch(() => undefined);
        if (taken(err)) return false;
        throw err;
      } finally {
        client.release();
      }
    },
    async lines(log, after, limit) {
      const { rows } = await pool.query<{ tree_size: string; root: string; line: string }>("SELECT tree_size, root, line FROM witness_heads WHERE log = $1 AND tree_size > $2 ORDER BY tree_size LIMIT $3", [log, after, limit]);
      return rows.map((r) => ({ tree_size: Number(r.tree_size), root: r.root, line: r.line }));
    },
  };
}
